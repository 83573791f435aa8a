"""The sealing step links a batch with one INSERT of all its links instead of one INSERT per link.

audit_seal(batch_size) keeps its contract (migration 0004): it takes the sealing lock (returns
-1 when another session holds it), reads the chain's head, links up to batch_size queued
entries in id order, removes them from the queue and returns how many it linked. The digests
are still the canonical form of audit/chain.py, verbatim as in 0004. What changed is the shape
of the work: the digests of the whole batch come from one query into arrays, the loop only
chains the hashes (the one step that is sequential), and the links go in with one INSERT from
those arrays. The row-by-row INSERT started an executor per link: a third or more of the
sealing work per entry.
"""

from importlib import import_module

from django.db import migrations

SEAL = r"""
CREATE OR REPLACE FUNCTION audit_seal(batch_size integer) RETURNS integer
LANGUAGE plpgsql
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    head_seq bigint;
    head_hash bytea;
    ids bigint[];
    identities bytea[];
    subjects bytea[];
    contents bytea[];
    prev_hashes bytea[];
    hashes bytea[];
    linked integer;
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

    SELECT array_agg(p.id ORDER BY p.id), array_agg(p.identity ORDER BY p.id),
           array_agg(p.subject ORDER BY p.id), array_agg(p.content ORDER BY p.id)
    INTO ids, identities, subjects, contents
    FROM (
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
    ) p;
    linked := coalesce(cardinality(ids), 0);

    IF linked = 0 THEN
        -- A queued entry whose row is gone was deleted before it could be sealed, which only
        -- someone bypassing the guard trigger can do: drop it from the queue, loudly.
        DELETE FROM audit_unsealedentry q
        WHERE NOT EXISTS (SELECT 1 FROM audit_auditentry e WHERE e.id = q.entry_id);
        GET DIAGNOSTICS vanished = ROW_COUNT;
        IF vanished > 0 THEN
            RAISE WARNING 'audit: % queued entries vanished before they were sealed', vanished;
        END IF;
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
    DELETE FROM audit_unsealedentry WHERE entry_id = ANY (ids);
    RETURN linked;
END;
$$
"""

# Reversing restores the row-by-row function of 0004.
PREVIOUS_SEAL = import_module("audit.migrations.0004_seal_function").SEAL.replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
)


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_impersonator_index")]

    operations = [migrations.RunSQL([SEAL], [PREVIOUS_SEAL])]
