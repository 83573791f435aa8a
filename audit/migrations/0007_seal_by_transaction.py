"""The sealing step finds new entries by their transaction instead of through a queue.

Until now an AFTER INSERT trigger put each new entry's id into audit_unsealedentry, and
audit_seal read that queue and emptied it. That was a PL/pgSQL call, a second row with its own
index entry and write-ahead log in every writer's transaction, and a delete per entry for the
sealer (dead queue rows that vacuum then had to clear): about a third of what writing an entry
cost the database.

Now each entry carries the id of the transaction that wrote it (``xid``, filled by the column
default ``pg_current_xact_id()``), and the sealer remembers the snapshot it last sealed up to
(audit_sealstate). The entries committed since are exactly those whose transaction was still
running in that snapshot (its xip list) or started after it (xid >= its xmax) and that the
sealer's current snapshot sees: two probes of the xid index, whatever the size of the trail
(audit_unsealed, which verification uses too).
A transaction id is taken when the row is written, inside the writer's own transaction, so
unlike the id sequence there is no moment at which an entry exists without it. The range is
bounded above by the current snapshot's xmax: after a restore from a dump into another server,
whose transaction counter starts lower, the restored entries keep the old server's ids, and the
bound keeps each round to the ids handed out since the last one; the first round there sees the
counter behind the remembered snapshot and looks at every entry once instead. Rows of the
same batch are linked in id order, as before.

An entry is never linked twice (the NOT EXISTS on audit_chainlink, whose entry_id is unique),
and the remembered snapshot only moves forward once a round has linked everything its own
snapshot could see, so a round cut short by batch_size is finished by the next one. A caller
sealing inside a transaction that writes entries (a test, a one-off script) stays in the
remembered snapshot's running list, so entries it writes after sealing are found too.

Entries written before this migration have no xid. The migration first takes the sealing lock
and links every entry still queued (with the previous function), under an exclusive lock on
the entries so that none is written meanwhile, then records its own snapshot as the starting
point and drops the queue.
"""

from importlib import import_module

from django.db import migrations

SEAL_LOCK = 7022629598042219873  # audit.chain.SEAL_LOCK_KEY

UNSEALED = r"""
CREATE FUNCTION audit_unsealed(max_count integer)
RETURNS TABLE (entry_id bigint, written_at timestamptz)
LANGUAGE plpgsql STABLE
-- Two range scans of the xid index and one probe of the links' entry_id per entry found,
-- whatever the statistics say (right after this migration the xid column has none): planned
-- with the snapshot's values, with no way around the indexes.
SET plan_cache_mode = force_custom_plan
SET enable_seqscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
    since pg_snapshot;
    after xid8;
    before xid8;
    own xid8;
    running xid8[];
BEGIN
    SELECT snapshot INTO STRICT since FROM audit_sealstate WHERE id = 1;
    after := pg_snapshot_xmax(since);
    -- Nothing at or above the current snapshot's xmax is visible to it, but the caller's own
    -- transaction (its entries are visible to it) may be there.
    before := pg_snapshot_xmax(pg_current_snapshot());
    own := pg_current_xact_id_if_assigned();
    IF own >= before THEN
        before := (own::text::numeric + 1)::text::xid8;
    END IF;
    IF after > before THEN
        -- Transaction ids went backwards: the database was restored from a dump into another
        -- server, whose counter starts afresh, and the entries' ids are from the old one. Look
        -- at every entry once (the round then remembers this server's snapshot).
        RETURN QUERY
            SELECT e.id, e."timestamp" FROM audit_auditentry e
            WHERE NOT EXISTS (SELECT 1 FROM audit_chainlink l WHERE l.entry_id = e.id)
            ORDER BY e.id
            LIMIT max_count;
        RETURN;
    END IF;
    running := ARRAY(SELECT pg_snapshot_xip(since));
    RETURN QUERY
        WITH candidates AS MATERIALIZED (
            SELECT e.id, e."timestamp" FROM audit_auditentry e WHERE e.xid >= after AND e.xid < before
            UNION ALL
            SELECT e.id, e."timestamp" FROM audit_auditentry e WHERE e.xid = ANY (running)
        )
        SELECT c.id, c."timestamp" FROM candidates c
        WHERE NOT EXISTS (SELECT 1 FROM audit_chainlink l WHERE l.entry_id = c.id)
        ORDER BY c.id
        LIMIT max_count;
END;
$$
"""

SEAL = r"""
CREATE OR REPLACE FUNCTION audit_seal(batch_size integer) RETURNS integer
LANGUAGE plpgsql
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    since pg_snapshot;
    seen pg_snapshot;
    own xid8;
    head_seq bigint;
    head_hash bytea;
    ids bigint[];
    identities bytea[];
    subjects bytea[];
    contents bytea[];
    prev_hashes bytea[];
    hashes bytea[];
    linked integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7022629598042219873) THEN
        RETURN -1;
    END IF;
    -- Read after taking the lock: the previous holder's links and snapshot are committed.
    SELECT snapshot INTO STRICT since FROM audit_sealstate WHERE id = 1;
    SELECT seq, hash INTO head_seq, head_hash FROM audit_chainlink ORDER BY seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        -- Every entry purged: the chain goes on from the last purge checkpoint.
        SELECT seq, hash INTO head_seq, head_hash
        FROM audit_auditcheckpoint WHERE kind = 'purge' ORDER BY seq DESC LIMIT 1;
    END IF;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;

    -- One statement, so its snapshot is the one pg_current_snapshot() returns (audit_unsealed,
    -- a stable function, reads with it too): the entries it finds are exactly those committed
    -- by that snapshot.
    SELECT pg_current_snapshot(), array_agg(p.id ORDER BY p.id), array_agg(p.identity ORDER BY p.id),
           array_agg(p.subject ORDER BY p.id), array_agg(p.content ORDER BY p.id)
    INTO seen, ids, identities, subjects, contents
    FROM (
        SELECT e.id, d.identity, d.subject,
               pg_catalog.sha256('adminsite-audit/v1/content|'::bytea || pg_catalog.record_send(ROW(e.id::int8, e."timestamp"::timestamptz, e.event::text, e.action::int8, e.source::text, e.content_type_id::int8, e.object_pk::text, e.object_id::int8, e.actor_id::int8, e.impersonator_id::int8, e.cid::text, e.remote_port::int8)) || d.identity || d.subject) AS content
        FROM audit_unsealed(batch_size) u
        JOIN audit_auditentry e ON e.id = u.entry_id
        CROSS JOIN LATERAL (
            SELECT pg_catalog.sha256('adminsite-audit/v1/identity|'::bytea || pg_catalog.record_send(ROW(e.actor_name::text, e.actor_email::text, e.impersonator_name::text, e.remote_addr::inet, e.user_agent::text))) AS identity,
                   pg_catalog.sha256('adminsite-audit/v1/subject|'::bytea || pg_catalog.record_send(ROW(e.object_repr::text, e.changes::jsonb, e.changes_text::text, e.additional_data::jsonb, e.serialized_data::jsonb))) AS subject
            OFFSET 0
        ) d
    ) p;
    linked := coalesce(cardinality(ids), 0);

    -- A caller that has written in its own transaction sees its own entries, but its
    -- transaction is not in the snapshot's running list: keep it there (or above xmax, where
    -- it may already be), so that entries it writes after this call are still looked for.
    own := pg_current_xact_id_if_assigned();
    IF own IS NOT NULL AND own < pg_snapshot_xmax(seen) THEN
        seen := format('%s:%s:%s', least(pg_snapshot_xmin(seen), own), pg_snapshot_xmax(seen),
                       (SELECT string_agg(x::text, ',' ORDER BY x)
                        FROM (SELECT pg_snapshot_xip(seen) UNION SELECT own) AS running(x)))::pg_snapshot;
    END IF;
    -- Everything the snapshot saw is linked now, unless the batch was full: move on from it.
    IF linked < batch_size AND seen::text <> since::text THEN
        UPDATE audit_sealstate SET snapshot = seen WHERE id = 1;
    END IF;
    IF linked = 0 THEN
        RETURN 0;
    END IF;

    -- The one step that must go entry by entry: each hash covers the one before it.
    prev_hashes := array_fill(NULL::bytea, ARRAY[linked]);
    hashes := array_fill(NULL::bytea, ARRAY[linked]);
    FOR i IN 1..linked LOOP
        prev_hashes[i] := head_hash;
        head_hash := pg_catalog.sha256(head_hash || contents[i]);
        hashes[i] := head_hash;
    END LOOP;
    INSERT INTO audit_chainlink (seq, entry_id, prev_hash, hash, identity_digest, subject_digest, sealed_at)
    SELECT head_seq + l.n, l.id, l.prev_hash, l.hash, l.identity, l.subject, now()
    FROM unnest(ids, prev_hashes, hashes, identities, subjects)
         WITH ORDINALITY AS l(id, prev_hash, hash, identity, subject, n);
    RETURN linked;
END;
$$
"""

LOCKS = [
    # No entry is written while the queue is drained and the starting snapshot taken.
    "LOCK TABLE audit_auditentry IN EXCLUSIVE MODE",
    f"SELECT pg_advisory_xact_lock({SEAL_LOCK})",
]
TRIGGERS = import_module("audit.migrations.0002_append_only_and_search")

DROP_QUEUE_TRIGGER = [
    *LOCKS,
    # The previous function, until the queue is empty.
    """DO $$ BEGIN
           WHILE audit_seal(5000) > 0 LOOP END LOOP;
       END $$""",
    "DROP TRIGGER audit_entry_enqueue ON audit_auditentry",
    "DROP FUNCTION audit_entry_enqueue()",
]
RESTORE_QUEUE_TRIGGER = [
    TRIGGERS.ENQUEUE,
    """CREATE TRIGGER audit_entry_enqueue AFTER INSERT ON audit_auditentry
       FOR EACH ROW EXECUTE FUNCTION audit_entry_enqueue()""",
]

SEAL_BY_TRANSACTION = [
    "ALTER TABLE audit_auditentry ADD COLUMN xid xid8",
    "ALTER TABLE audit_auditentry ALTER COLUMN xid SET DEFAULT pg_current_xact_id()",
    # New rows must carry their transaction; rows from before this migration have none.
    "ALTER TABLE audit_auditentry ADD CONSTRAINT audit_entry_xid_set CHECK (xid IS NOT NULL) NOT VALID",
    "CREATE INDEX audit_entry_xid_idx ON audit_auditentry (xid) WHERE xid IS NOT NULL",
    "ANALYZE audit_auditentry (xid)",
    """CREATE TABLE audit_sealstate (
           id smallint PRIMARY KEY CHECK (id = 1),
           snapshot pg_snapshot NOT NULL
       )""",
    "INSERT INTO audit_sealstate (id, snapshot) VALUES (1, pg_current_snapshot())",
    UNSEALED,
    SEAL,
]
# Back to the queue (recreated by reversing the DeleteModel): unlinked entries are queued again
# and the previous function links them.
SEAL_BY_QUEUE = [
    *LOCKS,
    import_module("audit.migrations.0006_seal_in_bulk").SEAL,
    """INSERT INTO audit_unsealedentry (entry_id)
       SELECT e.id FROM audit_auditentry e
       WHERE e.xid IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_chainlink l WHERE l.entry_id = e.id)""",
    "DROP FUNCTION IF EXISTS audit_unsealed(integer)",
    "DROP TABLE audit_sealstate",
    "ALTER TABLE audit_auditentry DROP COLUMN xid",
]


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_seal_in_bulk")]

    operations = [
        migrations.RunSQL(DROP_QUEUE_TRIGGER, RESTORE_QUEUE_TRIGGER),
        migrations.RunSQL(SEAL_BY_TRANSACTION, SEAL_BY_QUEUE),
        migrations.DeleteModel(name="UnsealedEntry"),
    ]
