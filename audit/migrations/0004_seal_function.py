"""The sealing step as one database function, so that sealing after a commit is one round trip
with cached plans instead of five statements parsed and planned each time.

audit_seal(batch_size) takes the sealing lock (returns -1 when another session holds it), reads
the chain's head, links up to batch_size queued entries in id order and removes them from the
queue. The digests are the canonical form of audit/chain.py (FORMAT_TAG "adminsite-audit/v1"):
the expressions below are that module's IDENTITY_DIGEST_SQL, SUBJECT_DIGEST_SQL and
content_digest_sql() verbatim, and verification recomputes them from audit/chain.py itself, so
a difference would show as a broken chain at once (tests/audit/test_chain.py checks both agree).
The lock key is audit.chain.SEAL_LOCK_KEY.

Hash and merge joins are off inside the function: the queue is tiny and the entries table huge,
so entries are looked up by id; a cached generic plan must never scan the entries table.
"""

from django.db import migrations

SEAL = r"""
CREATE FUNCTION audit_seal(batch_size integer) RETURNS integer
LANGUAGE plpgsql
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    head_seq bigint;
    head_hash bytea;
    current_hash bytea;
    pending record;
    linked_ids bigint[] := '{}';
    vanished integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7022629598042219873) THEN
        RETURN -1;
    END IF;
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

    FOR pending IN
        SELECT e.id, d.identity, d.subject,
               pg_catalog.sha256('adminsite-audit/v1/content|'::bytea || pg_catalog.record_send(ROW(e.id::int8, e."timestamp"::timestamptz, e.event::text, e.action::int8, e.source::text, e.content_type_id::int8, e.object_pk::text, e.object_id::int8, e.actor_id::int8, e.impersonator_id::int8, e.cid::text, e.remote_port::int8)) || d.identity || d.subject) AS content
        FROM audit_unsealedentry q
        JOIN audit_auditentry e ON e.id = q.entry_id
        CROSS JOIN LATERAL (
            SELECT pg_catalog.sha256('adminsite-audit/v1/identity|'::bytea || pg_catalog.record_send(ROW(e.actor_name::text, e.actor_email::text, e.impersonator_name::text, e.remote_addr::inet, e.user_agent::text))) AS identity,
                   pg_catalog.sha256('adminsite-audit/v1/subject|'::bytea || pg_catalog.record_send(ROW(e.object_repr::text, e.changes::jsonb, e.changes_text::text, e.additional_data::jsonb, e.serialized_data::jsonb))) AS subject
            OFFSET 0
        ) d
        ORDER BY q.entry_id
        LIMIT batch_size
    LOOP
        head_seq := head_seq + 1;
        current_hash := pg_catalog.sha256(head_hash || pending.content);
        INSERT INTO audit_chainlink (seq, entry_id, prev_hash, hash, identity_digest, subject_digest, sealed_at)
        VALUES (head_seq, pending.id, head_hash, current_hash, pending.identity, pending.subject, now());
        head_hash := current_hash;
        linked_ids := linked_ids || pending.id;
    END LOOP;

    IF cardinality(linked_ids) > 0 THEN
        DELETE FROM audit_unsealedentry WHERE entry_id = ANY (linked_ids);
    ELSE
        -- A queued entry whose row is gone was deleted before it could be sealed, which only
        -- someone bypassing the guard trigger can do: drop it from the queue, loudly.
        DELETE FROM audit_unsealedentry q
        WHERE NOT EXISTS (SELECT 1 FROM audit_auditentry e WHERE e.id = q.entry_id);
        GET DIAGNOSTICS vanished = ROW_COUNT;
        IF vanished > 0 THEN
            RAISE WARNING 'audit: % queued entries vanished before they were sealed', vanished;
        END IF;
    END IF;
    RETURN cardinality(linked_ids);
END;
$$
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_detach_auditlog_table")]

    operations = [
        migrations.RunSQL([SEAL], ["DROP FUNCTION IF EXISTS audit_seal(integer)"]),
    ]
