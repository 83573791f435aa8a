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

from django.contrib.auth import get_user_model
from django.db import connection

from adminsite.prepared import Statement
from tickets.models import ACTIVE_STATUSES, AssignmentStrategy, Category
from tickets.queries import CHANGE_TICKET_HOLDERS

User = get_user_model()


def routes(category: Category) -> bool:
    """Whether tickets of ``category`` are assigned automatically."""
    return (
        category.assignment_strategy != AssignmentStrategy.MANUAL and category.team_id is not None
    )


USER_COLUMNS = ("id", "username", "first_name", "last_name", "email", "is_staff", "is_active")

# The candidates of one routing decision (available agents of the team who may work tickets,
# as ``queries.assignable_agents``), locked in primary-key order. Written as SQL rather
# than a queryset: compiling the equivalent ORM query cost more than running it, and this
# runs for every ticket created in a routed category (prepared once per connection, as
# planning it cost more than running it too).
_CANDIDATES = Statement(
    "tickets_route_candidates",
    f"""
    SELECT a.id, a.max_open_tickets, a.last_assigned_at,
           {", ".join(f"u.{c}" for c in USER_COLUMNS)}
      FROM tickets_agentprofile a
      JOIN auth_user u ON u.id = a.user_id
      JOIN tickets_supportteam_members m ON m.user_id = a.user_id AND m.supportteam_id = %(team)s
     WHERE a.is_available AND u.is_active AND u.is_staff AND a.user_id <> %(exclude)s
       AND (u.is_superuser OR u.id IN ({CHANGE_TICKET_HOLDERS}))
     ORDER BY a.id
       FOR UPDATE OF a
""",  # noqa: S608 - constants only; the team and user ids are bound parameters
    [("team", "bigint"), ("exclude", "bigint")],
)


def open_loads(user_ids) -> dict[int, int]:
    """Active tickets per assignee, for the given users: one query over the queue's facet
    counters (TicketCount, kept by triggers in the changing transaction), so its cost does
    not grow with the agents' backlogs."""
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


# The choice among the locked candidates, made and stamped in one statement: an agent below
# the cap (loads as in open_loads); least load first for ``least_load``; then whoever waited
# longest (never routed first), then the oldest profile. The statement begins after the
# candidates' locks were granted, so its snapshot holds every ticket routed before this one:
# READ COMMITTED takes a snapshot per statement, and the previous holder of the locks
# committed before releasing them. Counting in the locking statement instead would count
# from a snapshot taken before the wait, and could push an agent past the cap.
_CHOOSE = Statement(
    "tickets_route_choose",
    """
    WITH loads AS (
        SELECT assignee_key, sum(n) AS n FROM tickets_ticketcount
         WHERE status = ANY(%(statuses)s) AND assignee_key = ANY(%(users)s)
         GROUP BY assignee_key
    ), chosen AS (
        SELECT a.id FROM tickets_agentprofile a
          LEFT JOIN loads ON loads.assignee_key = a.user_id
         WHERE a.id = ANY(%(profiles)s) AND coalesce(loads.n, 0) < a.max_open_tickets
         ORDER BY CASE WHEN %(least_load)s THEN coalesce(loads.n, 0) ELSE 0 END,
                  a.last_assigned_at ASC NULLS FIRST, a.id
         LIMIT 1
    )
    UPDATE tickets_agentprofile a SET last_assigned_at = %(now)s
      FROM chosen WHERE a.id = chosen.id
    RETURNING a.user_id
""",
    [
        ("statuses", "text[]"),
        ("users", "bigint[]"),
        ("profiles", "bigint[]"),
        ("least_load", "boolean"),
        ("now", "timestamptz"),
    ],
)


def pick_agent(*, category: Category, now, exclude_user_id: int | None = None):
    """Lock the eligible agents of the category's team and choose one; returns the chosen
    user (their profile's ``last_assigned_at`` set to ``now``) or None."""
    if not routes(category):
        return None
    # (profile id, cap, last routed, user id, ...user columns)
    rows = _CANDIDATES.execute(
        {"team": category.team_id, "exclude": exclude_user_id or 0}
    ).fetchall()
    if not rows:
        return None
    chosen = _CHOOSE.execute(
        {
            "statuses": list(ACTIVE_STATUSES),
            "users": [row[3] for row in rows],
            "profiles": [row[0] for row in rows],
            "least_load": category.assignment_strategy == AssignmentStrategy.LEAST_LOAD,
            "now": now,
        }
    ).fetchone()
    if chosen is None:
        return None
    row = next(row for row in rows if row[3] == chosen[0])
    return User.from_db(connection.alias, USER_COLUMNS, row[3:])
