"""Facet counters for tickets (see tickets.models.TicketCount), kept by statement triggers.

Each INSERT, UPDATE or DELETE statement on tickets appends one delta row per facet
combination it changed (an UPDATE that changes no facet appends nothing), in the same
transaction, so the counts a reader sums are always exactly those of the tickets it can see.
``tickets_compact_counts()`` folds the deltas into one row per combination; the rows already
in place when this migration runs are counted once here.
"""

import django.contrib.postgres.indexes
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

KEY = "status, priority, category_id, assignee_key, sla_breached"

FORWARD = f"""
CREATE FUNCTION tickets_count_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tickets_ticketcount ({KEY}, n)
        SELECT status, priority, category_id, coalesce(assignee_id, 0), sla_breached, count(*)
          FROM new_tickets GROUP BY 1, 2, 3, 4, 5;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO tickets_ticketcount ({KEY}, n)
        SELECT status, priority, category_id, coalesce(assignee_id, 0), sla_breached, -count(*)
          FROM old_tickets GROUP BY 1, 2, 3, 4, 5;
    ELSE
        INSERT INTO tickets_ticketcount ({KEY}, n)
        SELECT {KEY}, sum(n)
          FROM (SELECT status, priority, category_id, coalesce(assignee_id, 0) AS assignee_key,
                       sla_breached, 1 AS n FROM new_tickets
                UNION ALL
                SELECT status, priority, category_id, coalesce(assignee_id, 0), sla_breached, -1
                  FROM old_tickets) AS delta
         GROUP BY 1, 2, 3, 4, 5
        HAVING sum(n) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tickets_count_insert AFTER INSERT ON tickets_ticket
    REFERENCING NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_changes();
CREATE TRIGGER tickets_count_update AFTER UPDATE ON tickets_ticket
    REFERENCING OLD TABLE AS old_tickets NEW TABLE AS new_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_changes();
CREATE TRIGGER tickets_count_delete AFTER DELETE ON tickets_ticket
    REFERENCING OLD TABLE AS old_tickets
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_changes();

CREATE FUNCTION tickets_count_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tickets_ticketcount;
    RETURN NULL;
END $$;
CREATE TRIGGER tickets_count_truncate AFTER TRUNCATE ON tickets_ticket
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_count_truncate();

-- Folds the delta rows of every combination that has more than one row into a single row
-- (dropping combinations that sum to zero). Rows inserted by transactions that commit while it
-- runs are not in its snapshot, so it leaves them for the next run; two runs at once delete
-- disjoint rows (DELETE ... RETURNING reports only the rows it removed). Returns the number
-- of combinations folded.
CREATE FUNCTION tickets_compact_counts() RETURNS bigint LANGUAGE sql AS $$
    WITH crowded AS (
        SELECT {KEY} FROM tickets_ticketcount GROUP BY 1, 2, 3, 4, 5
        HAVING count(*) > 1 OR sum(n) = 0
    ), gone AS (
        DELETE FROM tickets_ticketcount c USING crowded k
         WHERE (c.status, c.priority, c.category_id, c.assignee_key, c.sla_breached)
             = (k.status, k.priority, k.category_id, k.assignee_key, k.sla_breached)
        RETURNING c.status, c.priority, c.category_id, c.assignee_key, c.sla_breached, c.n
    ), folded AS (
        INSERT INTO tickets_ticketcount ({KEY}, n)
        SELECT {KEY}, sum(n) FROM gone GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM crowded)
$$;

-- Recount from scratch (after a bulk load with triggers off, or to check the counters).
CREATE FUNCTION tickets_rebuild_counts() RETURNS void LANGUAGE sql AS $$
    DELETE FROM tickets_ticketcount;
    INSERT INTO tickets_ticketcount ({KEY}, n)
    SELECT status, priority, category_id, coalesce(assignee_id, 0), sla_breached, count(*)
      FROM tickets_ticket GROUP BY 1, 2, 3, 4, 5;
$$;

SELECT tickets_rebuild_counts();
"""

REVERSE = """
DROP TRIGGER IF EXISTS tickets_count_truncate ON tickets_ticket;
DROP TRIGGER IF EXISTS tickets_count_delete ON tickets_ticket;
DROP TRIGGER IF EXISTS tickets_count_update ON tickets_ticket;
DROP TRIGGER IF EXISTS tickets_count_insert ON tickets_ticket;
DROP FUNCTION IF EXISTS tickets_rebuild_counts();
DROP FUNCTION IF EXISTS tickets_compact_counts();
DROP FUNCTION IF EXISTS tickets_count_truncate();
DROP FUNCTION IF EXISTS tickets_count_changes();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('tickets', '0002_search_triggers_and_categories'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='TicketCount',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(max_length=10)),
                ('priority', models.CharField(max_length=10)),
                ('assignee_key', models.BigIntegerField(help_text="The assignee's user id, 0 when unassigned.")),
                ('sla_breached', models.BooleanField()),
                ('n', models.BigIntegerField()),
            ],
        ),
        migrations.AddIndex(
            model_name='ticket',
            index=django.contrib.postgres.indexes.GinIndex(condition=models.Q(('status__in', ('new', 'open', 'pending', 'on_hold'))), fields=['search_vector'], name='ticket_active_search'),
        ),
        migrations.AddField(
            model_name='ticketcount',
            name='category',
            field=models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='tickets.category'),
        ),
        migrations.AddIndex(
            model_name='ticketcount',
            index=models.Index(models.F('status'), models.F('priority'), models.F('category'), models.F('assignee_key'), models.F('sla_breached'), name='ticket_count_key'),
        ),
        migrations.RunSQL(FORWARD, reverse_sql=REVERSE),
    ]
