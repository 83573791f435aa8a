"""Automatic assignment: which agent of a category's team gets a ticket.

A category routes tickets by its ``assignment_strategy``: ``manual`` (no routing),
``round_robin`` (the available agent who waited longest since their last routed ticket) or
``least_load`` (the available agent with the fewest active tickets; ties go to whoever
waited longest). Agents at their cap (AgentProfile.max_open_tickets active tickets) are
skipped; when nobody is eligible the ticket stays unassigned and is flagged.

Concurrency: :func:`pick_agent` locks the profiles of the team's available agents in
primary-key order (``SELECT … FOR UPDATE``) before counting their tickets, so tickets routed
to the same team at the same time are routed one after the other: each count sees the
tickets the previous one committed, and no agent is ever pushed past the cap. Called by the
services inside their transaction; the lock lasts until it commits.
"""

from __future__ import annotations

import datetime as dt

from django.contrib.auth import get_user_model
from django.db import connection

from tickets.models import ACTIVE_STATUSES, AgentProfile, AssignmentStrategy, Category

User = get_user_model()
_NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)


def routes(category: Category) -> bool:
    """Whether tickets of ``category`` are assigned automatically."""
    return (
        category.assignment_strategy != AssignmentStrategy.MANUAL and category.team_id is not None
    )


# Who may work tickets, as in ``services.is_assignable``: superusers and holders of
# tickets.change_ticket, directly or through a group. Uncorrelated IN subqueries, which
# PostgreSQL hashes once per statement.
_WORKS_TICKETS = """
    (u.is_superuser
     OR u.id IN (SELECT ug.user_id FROM auth_user_groups ug
                   JOIN auth_group_permissions gp ON gp.group_id = ug.group_id
                  WHERE gp.permission_id IN (SELECT id FROM change_ticket))
     OR u.id IN (SELECT up.user_id FROM auth_user_user_permissions up
                  WHERE up.permission_id IN (SELECT id FROM change_ticket)))
"""
USER_COLUMNS = ("id", "username", "first_name", "last_name", "email", "is_staff", "is_active")

# The candidates of one routing decision, locked in primary-key order. Written as SQL rather
# than a queryset: compiling the equivalent ORM query cost more than running it, and this
# runs for every ticket created in a routed category.
_CANDIDATES = f"""
    WITH change_ticket AS (
        SELECT p.id FROM auth_permission p
          JOIN django_content_type ct ON ct.id = p.content_type_id
         WHERE p.codename = 'change_ticket' AND ct.app_label = 'tickets'
    )
    SELECT a.id, a.max_open_tickets, a.last_assigned_at,
           {", ".join(f"u.{c}" for c in USER_COLUMNS)}
      FROM tickets_agentprofile a
      JOIN auth_user u ON u.id = a.user_id
      JOIN tickets_supportteam_members m ON m.user_id = a.user_id AND m.supportteam_id = %s
     WHERE a.is_available AND u.is_active AND u.is_staff AND a.user_id <> %s
       AND {_WORKS_TICKETS}
     ORDER BY a.id
       FOR UPDATE OF a
"""  # noqa: S608 - constants only; the team and user ids are bound parameters


def open_loads(user_ids) -> dict[int, int]:
    """Active tickets per assignee, for the given users: one query over the queue's facet
    counters (TicketCount, kept by triggers in the changing transaction), so its cost does
    not grow with the agents' backlogs. Under pick_agent's locks every routed ticket before
    this one has committed, and a statement sees what committed before it began."""
    user_ids = list(user_ids)
    if not user_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT assignee_key, sum(n) FROM tickets_ticketcount"
            " WHERE status = ANY(%s) AND assignee_key = ANY(%s) GROUP BY assignee_key",
            [list(ACTIVE_STATUSES), user_ids],
        )
        return {key: int(n) for key, n in cursor.fetchall() if n}


def pick_agent(*, category: Category, now, exclude_user_id: int | None = None):
    """Lock the eligible agents of the category's team and choose one; returns the chosen
    user (their profile's ``last_assigned_at`` set to ``now``) or None."""
    if not routes(category):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_CANDIDATES, [category.team_id, exclude_user_id or 0])
        rows = cursor.fetchall()
    if not rows:
        return None
    loads = open_loads([row[3] for row in rows])
    # (profile id, cap, last routed, user id, ...user columns)
    eligible = [row for row in rows if loads.get(row[3], 0) < row[1]]
    if not eligible:
        return None
    if category.assignment_strategy == AssignmentStrategy.LEAST_LOAD:
        chosen = min(eligible, key=lambda r: (loads.get(r[3], 0), r[2] or _NEVER, r[0]))
    else:
        chosen = min(eligible, key=lambda r: (r[2] or _NEVER, r[0]))
    AgentProfile.objects.filter(pk=chosen[0]).update(last_assigned_at=now)
    return User.from_db(connection.alias, USER_COLUMNS, chosen[3:])
