"""Append-only guards, the sealing queue trigger, and the free-text index of the audit trail.

Guards (BEFORE UPDATE OR DELETE, per row) reject every change to entries, chain links and
checkpoints, except two sanctioned paths that the service taking them announces with a
transaction-local setting (``set_config(..., true)``, i.e. ``SET LOCAL``):

* ``audit.mode = 'erase'``: the identity or subject group of a *linked* entry is blanked
  (GDPR) with its ``*_erased_at`` set, and nothing else changes; an erasure cannot be undone;
* ``audit.mode = 'purge'``: linked entries and their links up to seq ``audit.purge_through``
  are deleted (retention); checkpoints are never deleted.

TRUNCATE is not guarded: Django's test runner empties tables with it between transactional
tests, and a truncated chain is caught by the checkpoints anyway (``audit_verify``). The guards
stop mistakes and unsanctioned code paths; they are not a security boundary (the table owner can
disable triggers), which is what the hash chain and the signed checkpoints are for.

The queue trigger (AFTER INSERT, per row) puts each new entry's id into audit_unsealedentry, in
the writer's transaction, so the sealing step sees exactly the committed entries to link.
"""

from django.db import migrations

ENTRY_GUARD = r"""
CREATE FUNCTION audit_entry_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    mode text := coalesce(current_setting('audit.mode', true), '');
    identity_columns text[] := ARRAY['actor_name', 'actor_email', 'impersonator_name', 'remote_addr',
                                     'user_agent', 'identity_erased_at'];
    subject_columns text[] := ARRAY['object_repr', 'changes', 'changes_text', 'additional_data',
                                    'serialized_data', 'subject_erased_at'];
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF mode = 'purge' AND EXISTS (
            SELECT 1 FROM audit_chainlink l
            WHERE l.entry_id = OLD.id
              AND l.seq <= coalesce(nullif(current_setting('audit.purge_through', true), ''), '0')::bigint
        ) THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit entries are append-only: DELETE of entry % rejected', OLD.id
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Entries leave only through the retention purge (manage.py audit_archive).';
    END IF;

    -- (Each CASE in parentheses: PL/pgSQL ends an IF condition at the first THEN it meets.)
    IF mode = 'erase'
       AND EXISTS (SELECT 1 FROM audit_chainlink l WHERE l.entry_id = OLD.id)
       AND (to_jsonb(NEW) - identity_columns - subject_columns) = (to_jsonb(OLD) - identity_columns - subject_columns)
       AND (CASE WHEN NEW.identity_erased_at IS NULL
                 THEN OLD.identity_erased_at IS NULL
                      AND (NEW.actor_name, NEW.actor_email, NEW.impersonator_name, NEW.remote_addr, NEW.user_agent)
                          IS NOT DISTINCT FROM
                          (OLD.actor_name, OLD.actor_email, OLD.impersonator_name, OLD.remote_addr, OLD.user_agent)
                 ELSE (OLD.identity_erased_at IS NULL OR OLD.identity_erased_at = NEW.identity_erased_at)
                      AND NEW.actor_name = '' AND NEW.actor_email = '' AND NEW.impersonator_name = ''
                      AND NEW.remote_addr IS NULL AND NEW.user_agent = '' END)
       AND (CASE WHEN NEW.subject_erased_at IS NULL
                 THEN OLD.subject_erased_at IS NULL
                      AND (NEW.object_repr, NEW.changes, NEW.changes_text, NEW.additional_data, NEW.serialized_data)
                          IS NOT DISTINCT FROM
                          (OLD.object_repr, OLD.changes, OLD.changes_text, OLD.additional_data, OLD.serialized_data)
                 ELSE (OLD.subject_erased_at IS NULL OR OLD.subject_erased_at = NEW.subject_erased_at)
                      AND NEW.object_repr = '' AND NEW.changes IS NULL AND NEW.changes_text = ''
                      AND NEW.additional_data IS NULL AND NEW.serialized_data IS NULL END) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit entries are append-only: UPDATE of entry % rejected', OLD.id
        USING ERRCODE = 'restrict_violation',
              HINT = 'Only the GDPR erasure and the retention purge may change the audit trail.';
END;
$$
"""

LINK_GUARD = r"""
CREATE FUNCTION audit_link_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(current_setting('audit.mode', true), '') = 'purge'
       AND OLD.seq <= coalesce(nullif(current_setting('audit.purge_through', true), ''), '0')::bigint THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'the audit chain is append-only: % of link seq % rejected', TG_OP, OLD.seq
        USING ERRCODE = 'restrict_violation';
END;
$$
"""

CHECKPOINT_GUARD = r"""
CREATE FUNCTION audit_checkpoint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: % of checkpoint % rejected', TG_OP, OLD.id
        USING ERRCODE = 'restrict_violation';
END;
$$
"""

ENQUEUE = r"""
CREATE FUNCTION audit_entry_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_unsealedentry (entry_id) VALUES (NEW.id);
    RETURN NULL;
END;
$$
"""

TRIGGERS = [
    """CREATE TRIGGER audit_entry_append_only BEFORE UPDATE OR DELETE ON audit_auditentry
       FOR EACH ROW EXECUTE FUNCTION audit_entry_guard()""",
    """CREATE TRIGGER audit_entry_enqueue AFTER INSERT ON audit_auditentry
       FOR EACH ROW EXECUTE FUNCTION audit_entry_enqueue()""",
    """CREATE TRIGGER audit_link_append_only BEFORE UPDATE OR DELETE ON audit_chainlink
       FOR EACH ROW EXECUTE FUNCTION audit_link_guard()""",
    """CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON audit_auditcheckpoint
       FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_guard()""",
]

DROP = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_auditcheckpoint",
    "DROP TRIGGER IF EXISTS audit_link_append_only ON audit_chainlink",
    "DROP TRIGGER IF EXISTS audit_entry_enqueue ON audit_auditentry",
    "DROP TRIGGER IF EXISTS audit_entry_append_only ON audit_auditentry",
    "DROP FUNCTION IF EXISTS audit_entry_enqueue()",
    "DROP FUNCTION IF EXISTS audit_checkpoint_guard()",
    "DROP FUNCTION IF EXISTS audit_link_guard()",
    "DROP FUNCTION IF EXISTS audit_entry_guard()",
]

# Must match audit.queries.SEARCH_VECTOR_SQL character for character, or the planner will not
# use the index for the viewer's free-text filter.
SEARCH_INDEX = """
CREATE INDEX audit_search_idx ON audit_auditentry USING gin (
    to_tsvector('simple'::regconfig, event || ' ' || actor_name || ' ' || actor_email || ' '
        || impersonator_name || ' ' || object_repr || ' ' || coalesce(cid, ''))
)
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        # One statement per item: given one string, Django would split the function bodies at
        # their semicolons.
        migrations.RunSQL([ENTRY_GUARD, LINK_GUARD, CHECKPOINT_GUARD, ENQUEUE, *TRIGGERS], DROP),
        migrations.RunSQL([SEARCH_INDEX], ["DROP INDEX IF EXISTS audit_search_idx"]),
    ]
