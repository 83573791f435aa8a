"""Detach django-auditlog's own table, unused since AUDITLOG_LOGENTRY_MODEL = "audit.AuditEntry".

django-auditlog's migrations create auditlog_logentry whether or not its model is swapped
out, with foreign keys to auth_user and django_content_type. Django no longer lists the swapped
model's table among the project's tables, so a flush (manage.py flush, and the test runner
between transactional tests) truncates auth_user without it and PostgreSQL refuses: "cannot
truncate a table referenced in a foreign key constraint". The table stays (auditlog's later
migrations may alter it); only its foreign keys go. It holds no rows: nothing writes to it.
"""

from django.db import migrations

DROP_FOREIGN_KEYS = """
DO $$
DECLARE
    constraint_name text;
BEGIN
    FOR constraint_name IN
        SELECT conname FROM pg_constraint
        WHERE conrelid = to_regclass('auditlog_logentry') AND contype = 'f'
    LOOP
        EXECUTE format('ALTER TABLE auditlog_logentry DROP CONSTRAINT %I', constraint_name);
    END LOOP;
END
$$
"""


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_append_only_and_search"),
        ("auditlog", "0017_add_actor_email"),
    ]

    operations = [migrations.RunSQL([DROP_FOREIGN_KEYS], migrations.RunSQL.noop)]
