"""Check, compact or rebuild the ticket queue's facet counters (tickets.models.TicketCount).

    python manage.py ticket_counts            # compare the counters with a real count
    python manage.py ticket_counts --compact  # fold delta rows now (beat does it every minute)
    python manage.py ticket_counts --rebuild  # recount from the tickets

The check exits 1 when a combination's counter differs from the tickets, naming it.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from tickets import services

# One statement, so both sides come from one snapshot: a change committed meanwhile cannot
# show up as a difference.
_CHECK = """
WITH counted AS (
    SELECT status, priority, category_id, coalesce(assignee_id, 0) AS assignee_key, sla_breached,
           count(*) AS n
      FROM tickets_ticket GROUP BY 1, 2, 3, 4, 5
), kept AS (
    SELECT status, priority, category_id, assignee_key, sla_breached, sum(n) AS n
      FROM tickets_ticketcount GROUP BY 1, 2, 3, 4, 5 HAVING sum(n) <> 0
), differing AS (
    SELECT status, priority, category_id, assignee_key, sla_breached,
           coalesce(c.n, 0) AS real, coalesce(k.n, 0) AS kept
      FROM counted c FULL JOIN kept k USING (status, priority, category_id, assignee_key, sla_breached)
     WHERE c.n IS DISTINCT FROM k.n
)
SELECT (SELECT coalesce(sum(n), 0) FROM counted),
       (SELECT coalesce(json_agg(d ORDER BY status, priority, category_id, assignee_key), '[]') FROM differing d)
"""


class Command(BaseCommand):
    help = "Check the ticket queue's counters against the tickets; --compact or --rebuild them."

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--compact", action="store_true", help="fold the counters' delta rows")
        action.add_argument(
            "--rebuild", action="store_true", help="recount the counters from the tickets"
        )

    def handle(self, *args, **options):
        if options["compact"]:
            folded = services.compact_ticket_counts()
            self.stdout.write(self.style.SUCCESS(f"Folded {folded} counter combinations."))
            return
        if options["rebuild"]:
            services.rebuild_ticket_counts()
            self.stdout.write(self.style.SUCCESS("Rebuilt the ticket counters from the tickets."))
            return
        with connection.cursor() as cursor:
            cursor.execute(_CHECK)
            total, wrong = cursor.fetchone()
        if isinstance(wrong, str):
            wrong = json.loads(wrong)
        if wrong:
            for row in wrong:
                self.stderr.write(
                    f"status={row['status']} priority={row['priority']} category={row['category_id']} "
                    f"assignee={row['assignee_key'] or 'none'} breached={row['sla_breached']}: "
                    f"{row['real']} tickets, counter says {row['kept']}"
                )
            raise CommandError(
                f"{len(wrong)} counter combinations differ from the tickets; "
                "run `python manage.py ticket_counts --rebuild`."
            )
        self.stdout.write(self.style.SUCCESS(f"The counters match all {total:,} tickets."))
