"""Reads shared by the console pages, the help pages and the JSON API.

Each function runs a fixed number of SQL queries whatever the data size (asserted in
tests/tickets/test_queries.py). Object access starts from what the user may see:
:func:`ticket_for` is the only way an id from a URL becomes a ticket.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import (
    Count,
    Prefetch,
    Q,
    QuerySet,
    prefetch_related_objects,
)
from django.db.models.expressions import RawSQL
from django.http import Http404

from adminsite.prepared import Statement
from tickets.filters import TicketFilters
from tickets.models import (
    ACTIVE_STATUSES,
    Category,
    Comment,
    EventKind,
    Priority,
    SavedView,
    Status,
    Ticket,
    TicketEvent,
)
from tickets.search import search_condition

User = get_user_model()

# Columns of a user that ticket pages and JSON show; never the password hash.
USER_FIELDS = ("id", "username", "first_name", "last_name", "email", "is_staff")
OTHER_TICKETS_SHOWN = 10


def _related_user_fields(*relations: str) -> list[str]:
    return [f"{relation}__{name}" for relation in relations for name in USER_FIELDS]


def epoch_us(column: str) -> str:
    """SQL for timestamp ``column`` as whole microseconds since 1970 (a bigint; NULL stays
    NULL), for reads of many rows: the database driver parses every timestamptz from text in
    Python, about ten microseconds each (a queue page has 300 of them, a long thread 200),
    where an integer loads in C; ``from_epoch_us`` gives back the same aware datetime. Exact
    on PostgreSQL 14 and later, where EXTRACT returns numeric."""
    return f"(EXTRACT(EPOCH FROM {column}) * 1000000)::bigint"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def from_epoch_us(value: int | None) -> dt.datetime | None:
    """The UTC datetime of an ``epoch_us`` value (None for NULL)."""
    return None if value is None else _EPOCH + dt.timedelta(microseconds=value)


def apply_filters(queryset: QuerySet, filters: TicketFilters) -> QuerySet:
    """Narrow ``queryset`` by every filter; no ordering, no visibility (callers add those)."""
    # Every status selected is no filter at all; leaving it out lets a count use any index.
    q = Q() if set(filters.statuses) >= set(Status.values) else Q(status__in=filters.statuses)
    if filters.priorities:
        q &= Q(priority__in=filters.priorities)
    if filters.category_ids:
        q &= Q(category_id__in=filters.category_ids)
    if filters.assignee == "none":
        q &= Q(assignee__isnull=True)
    elif filters.assignee is not None:
        q &= Q(assignee_id=filters.assignee)
    if filters.breached is not None:
        q &= Q(sla_breached=filters.breached)
    if filters.tags:
        q &= Q(tags__contains=list(filters.tags))
    if filters.requester_id is not None:
        q &= Q(requester_id=filters.requester_id)
    if filters.created_after is not None:
        q &= Q(created_at__gte=filters.created_after)
    if filters.created_before is not None:
        q &= Q(created_at__lt=filters.created_before)
    if filters.search:
        q &= search_condition(filters.search)
    return queryset.filter(q)


def ticket_queue(*, user, filters: TicketFilters) -> QuerySet:
    """Tickets ``user`` may see, filtered and ordered: the list API's results (the queue page
    reads the same rows as QueueRows, see ``queue_page``). Slice it for a page; it loads
    category, requester and assignee in the same query."""
    queryset = Ticket.objects.visible_to(user)
    return (
        apply_filters(queryset, filters)
        .select_related("category", "requester", "assignee")
        .only(
            *(f.name for f in Ticket._meta.concrete_fields if f.name != "search_vector"),
            "category__slug",
            "category__name",
            *_related_user_fields("requester", "assignee"),
        )
        .order_by(*filters.order_by)
    )


def ticket_queue_ids(*, user, filters: TicketFilters) -> QuerySet:
    """``ticket_queue``'s rows and order without its display joins: for ``page_slice``."""
    return apply_filters(Ticket.objects.visible_to(user), filters).order_by(*filters.order_by)


# A search scope counts at most this many tickets (see queue_stats).
SEARCH_COUNT_LIMIT = 1_000


def queue_stats(*, filters: TicketFilters) -> dict[str, int]:
    """The queue's statistics cards for the current filter scope, in one query.

    ``total`` counts every ticket in scope (it doubles as the pagination count); ``open`` is
    new or open tickets, ``pending`` pending ones; ``urgent`` and ``breached`` count only
    tickets still being worked (a breach on a closed ticket is history, not a task).

    Facet-only scopes (status, priority, category, assignee, breach — the cards' usual case)
    are summed from the trigger-kept counters in TicketCount, a few thousand rows whatever
    the ticket count; scopes with search, tags, requester or dates count the tickets. The
    query counts per (status, priority, breach), a few dozen rows at most, and the cards are
    added up here: five filtered aggregates cost more to compile than to run."""
    capped = False
    groups: Iterable[tuple[str, str, bool, int]]
    if filters.facets_only:
        groups = _facet_counts(filters)
    else:
        tickets = apply_filters(Ticket.objects.all(), filters).order_by()
        if filters.search:
            # A common word matches a third of a million tickets; counting them all reads the
            # whole table. The counts stop at SEARCH_COUNT_LIMIT (shown "1,000+"), as search
            # engines do, and the pages with them: nobody pages past 20 pages of hits.
            hits = tickets.values_list("status", "priority", "sla_breached")
            groups = [(*hit, 1) for hit in hits[: SEARCH_COUNT_LIMIT + 1]]
            capped = True
        else:
            # Counting ``status`` (never null) rather than ``id``: every column the query
            # reads is in the covering index ticket_active_stats (an index-only scan when
            # active).
            groups = tickets.values_list("status", "priority", "sla_breached").annotate(
                n=Count("status")
            )
    counts = dict.fromkeys(("total", "open", "pending", "urgent", "breached"), 0)
    for status, priority, breached, n in groups:
        n = int(n or 0)
        counts["total"] += n
        if status in (Status.NEW, Status.OPEN):
            counts["open"] += n
        elif status == Status.PENDING:
            counts["pending"] += n
        if status in ACTIVE_STATUSES:
            counts["urgent"] += n if priority == Priority.URGENT else 0
            counts["breached"] += n if breached else 0
    # Over the limit, every figure counts the first SEARCH_COUNT_LIMIT hits only: a lower
    # bound, which the page marks with a "+".
    stats: dict[str, int] = {**counts, "capped": capped and counts["total"] > SEARCH_COUNT_LIMIT}
    if stats["capped"]:
        stats["total"] = SEARCH_COUNT_LIMIT
    return stats


# The counters of a facet-only scope, per (status, priority, breach) for the queue's cards and
# in all for the list API's count. Statements for every such scope, prepared once per
# connection (compiling the ORM's aggregate cost more than running it, on every queue page);
# a facet left out is NULL, which keeps every row.
_FACET_SCOPE = """
      FROM tickets_ticketcount
     WHERE (%(statuses)s IS NULL OR status = ANY(%(statuses)s))
       AND (%(priorities)s IS NULL OR priority = ANY(%(priorities)s))
       AND (%(categories)s IS NULL OR category_id = ANY(%(categories)s))
       AND (%(assignee)s IS NULL OR assignee_key = %(assignee)s)
       AND (%(breached)s IS NULL OR sla_breached = %(breached)s)
"""
_FACETS = [
    ("statuses", "text[]"),
    ("priorities", "text[]"),
    ("categories", "bigint[]"),
    ("assignee", "bigint"),
    ("breached", "boolean"),
]
_FACET_COUNTS = Statement(
    "tickets_facet_counts",
    f"SELECT status, priority, sla_breached, sum(n) {_FACET_SCOPE}"
    " GROUP BY status, priority, sla_breached",  # noqa: S608 - constant SQL
    _FACETS,
)
_FACET_TOTAL = Statement(
    "tickets_facet_total",
    f"SELECT coalesce(sum(n), 0) {_FACET_SCOPE}",  # noqa: S608 - constant SQL
    _FACETS,
)


def _facets(filters: TicketFilters) -> dict:
    """The values of a facet-only scope for _FACET_SCOPE."""
    # Every status selected is no filter at all.
    statuses = None if set(filters.statuses) >= set(Status.values) else list(filters.statuses)
    return {
        "statuses": statuses,
        "priorities": list(filters.priorities) or None,
        "categories": list(filters.category_ids) or None,
        # The counters key an unassigned ticket as assignee 0.
        "assignee": 0 if filters.assignee == "none" else filters.assignee,
        "breached": filters.breached,
    }


def _facet_counts(filters: TicketFilters) -> list[tuple[str, str, bool, int]]:
    """(status, priority, breached, tickets) for a facet-only scope, from the counters."""
    return _FACET_COUNTS.execute(_facets(filters)).fetchall()


def ticket_count(*, user, filters: TicketFilters) -> int:
    """How many tickets ``ticket_queue`` would list (the list API's ``count``): from the
    counters for staff with facet-only filters, else a count of the visible tickets."""
    sees_all = user.is_staff and user.has_perm("tickets.view_ticket")
    if sees_all and filters.facets_only:
        return int(_FACET_TOTAL.execute(_facets(filters)).fetchone()[0])
    return apply_filters(Ticket.objects.visible_to(user), filters).count()


# From this offset on, a page is read ids-first (see page_slice).
DEFERRED_JOIN_FROM = 500


def page_slice(
    queryset: QuerySet, start: int, stop: int, *, id_source: QuerySet | None = None
) -> list:
    """Rows ``start``..``stop`` of an ordered queryset, in one query.

    OFFSET makes PostgreSQL produce and discard every skipped row — with its joins — so a
    deep page of a large queue costs as much as all the pages before it. From
    DEFERRED_JOIN_FROM on, the skipped rows are walked for their ids only (an index-only
    scan when the ordering has an index) and the page's rows are then loaded by id.
    ``id_source`` is the same rows and order without the joins ``queryset`` adds for display
    (``ticket_queue_ids``), so the walk past the skipped rows reads one index."""
    if stop <= start:
        return []
    if start < DEFERRED_JOIN_FROM:
        return list(queryset[start:stop])
    ids = (queryset if id_source is None else id_source).values("pk")[start:stop]
    return list(queryset.filter(pk__in=ids))


@dataclass
class QueuePage:
    tickets: list[QueueRow]
    stats: dict[str, int]
    number: int
    per_page: int

    @property
    def count(self) -> int:
        return self.stats["total"]

    @property
    def num_pages(self) -> int:
        return max(1, -(-self.count // self.per_page))

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def start_index(self) -> int:
        return 0 if not self.count else (self.number - 1) * self.per_page + 1

    @property
    def end_index(self) -> int:
        return min(self.number * self.per_page, self.count)


# What a queue row shows (the staff queue and the customer's list of requests). Read as
# values into plain records, not model instances: building a Ticket and two Users per row
# was a good part of the queue page's time.
QUEUE_ROW_COLUMNS = (
    "id",
    "ticket_number",
    "subject",
    "priority",
    "status",
    "tags",
    "created_at",
    "updated_at",
    "first_responded_at",
    "first_response_due_at",
    "resolution_due_at",
    "next_due_at",
    "sla_first_response_warning",
    "sla_resolution_warning",
    "sla_breached",
    "first_response_warn_at",
    "resolution_warn_at",
    "sla_paused_at",
    "needs_assignment",
)
ROW_PERSON_COLUMNS = USER_FIELDS
ROW_CATEGORY_COLUMNS = ("id", "slug", "name")
STATUS_LABELS = dict(Status.choices)
PRIORITY_LABELS = dict(Priority.choices)


@dataclass(frozen=True, slots=True)
class RowPerson:
    """A user as a queue row or a thread shows them (the USER_FIELDS; what ``user_label``
    and ``initials`` read)."""

    pk: int
    username: str
    first_name: str
    last_name: str
    email: str
    is_staff: bool

    def get_username(self) -> str:
        return self.username

    def get_full_name(self) -> str:
        # As AbstractUser.get_full_name.
        return f"{self.first_name} {self.last_name}".strip()


def _person(people: dict[int, RowPerson], columns) -> RowPerson:
    """The RowPerson of ``columns`` (the USER_FIELDS), made once per user among the rows read
    into ``people``: a page shows a few people many times."""
    if (found := people.get(columns[0])) is None:
        found = people[columns[0]] = RowPerson(*columns)
    return found


@dataclass(frozen=True, slots=True)
class RowCategory:
    pk: int
    slug: str
    name: str


@dataclass(slots=True)
class QueueRow:
    """One ticket of a queue page: the QUEUE_ROW_COLUMNS, its category, requester and
    assignee, and the display helpers the templates use on a Ticket."""

    id: int
    ticket_number: int
    subject: str
    priority: str
    status: str
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime
    first_responded_at: dt.datetime | None
    first_response_due_at: dt.datetime | None
    resolution_due_at: dt.datetime | None
    next_due_at: dt.datetime | None
    sla_first_response_warning: bool
    sla_resolution_warning: bool
    sla_breached: bool
    first_response_warn_at: dt.datetime | None
    resolution_warn_at: dt.datetime | None
    sla_paused_at: dt.datetime | None
    needs_assignment: bool
    category: RowCategory
    requester: RowPerson
    assignee: RowPerson | None

    @property
    def pk(self) -> int:
        return self.id

    def get_status_display(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    def get_priority_display(self) -> str:
        return PRIORITY_LABELS.get(self.priority, self.priority)


# Read as epoch_us (see there): nine timestamps a row, most of them set.
QUEUE_ROW_TIMES = frozenset(
    name
    for name in QUEUE_ROW_COLUMNS
    if Ticket._meta.get_field(name).get_internal_type() == "DateTimeField"
)


def _queue_rows(values) -> list[QueueRow]:
    """QueueRows from ``values`` rows (the QUEUE_ROW_COLUMNS, the QUEUE_ROW_TIMES among them
    as epoch_us, then the category's, the requester's and the assignee's columns);
    one record per category and person."""
    n_row, n_cat, n_person = (
        len(QUEUE_ROW_COLUMNS),
        len(ROW_CATEGORY_COLUMNS),
        len(ROW_PERSON_COLUMNS),
    )
    times = [n for n, name in enumerate(QUEUE_ROW_COLUMNS) if name in QUEUE_ROW_TIMES]
    categories: dict[int, RowCategory] = {}
    people: dict[int, RowPerson] = {}
    rows = []
    for row in values:
        columns = list(row[:n_row])
        for n in times:
            columns[n] = from_epoch_us(columns[n])
        category_columns = row[n_row : n_row + n_cat]
        if (category := categories.get(category_columns[0])) is None:
            category = categories[category_columns[0]] = RowCategory(*category_columns)
        requester = _person(people, row[n_row + n_cat : n_row + n_cat + n_person])
        assignee_columns = row[n_row + n_cat + n_person :]
        assignee = _person(people, assignee_columns) if assignee_columns[0] is not None else None
        rows.append(
            QueueRow(
                **dict(zip(QUEUE_ROW_COLUMNS, columns, strict=True)),
                category=category,
                requester=requester,
                assignee=assignee,
            )
        )
    return rows


# A page's rows for its ticket ids, in the ids' order (as ``_queue_rows`` reads them): the
# QUEUE_ROW_COLUMNS, the QUEUE_ROW_TIMES as epoch_us (see there), then the category's,
# the requester's and the assignee's columns. A fixed statement, prepared once per connection:
# building the three joins in the ORM and planning them cost more than running them, on
# every page of the queue.
_QUEUE_ROW_SELECT = ", ".join(
    [
        *(
            epoch_us(f"t.{name}") if name in QUEUE_ROW_TIMES else f"t.{name}"
            for name in QUEUE_ROW_COLUMNS
        ),
        *(f"c.{name}" for name in ROW_CATEGORY_COLUMNS),
        *(f"r.{name}" for name in ROW_PERSON_COLUMNS),
        *(f"a.{name}" for name in ROW_PERSON_COLUMNS),
    ]
)
_QUEUE_ROWS = Statement(
    "tickets_queue_rows",
    f"""
    SELECT {_QUEUE_ROW_SELECT}
      FROM unnest(%(ids)s) WITH ORDINALITY AS page (id, n)
      JOIN tickets_ticket t ON t.id = page.id
      JOIN tickets_category c ON c.id = t.category_id
      JOIN auth_user r ON r.id = t.requester_id
      LEFT JOIN auth_user a ON a.id = t.assignee_id
     ORDER BY page.n
""",  # noqa: S608 - constants only; the ids are a bound parameter
    [("ids", "bigint[]")],
)


def queue_page(*, user, filters: TicketFilters, page: int = 1, per_page: int = 50) -> QueuePage:
    """One page of the staff queue with its statistics: three queries whatever the page or
    the data size — the statistics (their total serves as the page count), the page's ticket
    ids, and those tickets' rows. A page past the end shows the last page. The tickets are
    QueueRows (the QUEUE_ROW_COLUMNS, no description).

    The ids come from the filtered, ordered tickets without the display joins: a walk of one
    index (index-only when the ordering has one), which also keeps deep pages cheap (see
    ``page_slice``)."""
    stats = queue_stats(filters=filters)
    last_page = max(1, -(-stats["total"] // per_page))
    number = min(max(1, page), last_page)
    offset = (number - 1) * per_page
    ids = list(
        ticket_queue_ids(user=user, filters=filters).values_list("pk", flat=True)[
            offset : offset + per_page
        ]
    )
    rows = _QUEUE_ROWS.execute({"ids": ids}).fetchall() if ids else []
    return QueuePage(tickets=_queue_rows(rows), stats=stats, number=number, per_page=per_page)


def ticket_for(user, ticket_id) -> Ticket:
    """The ticket with ``ticket_id`` if ``user`` may see it, else Http404 — also for another
    customer's ticket, so ids never reveal what exists."""
    try:
        pk = int(ticket_id)
    except (TypeError, ValueError):
        raise Http404("No such ticket.") from None
    if not 0 < pk < 2**63:
        raise Http404("No such ticket.")
    queryset = Ticket.objects.visible_to(user).select_related(
        "category", "requester", "assignee", "requester__support_profile"
    )
    try:
        ticket = queryset.get(pk=pk)
    except Ticket.DoesNotExist:
        raise Http404("No such ticket.") from None
    if ticket.merged_into_id is not None:
        # Read apart, for the few merged tickets: joining the tickets table a second time
        # (with its many indexes) doubled the time PostgreSQL took to plan every ticket's read.
        prefetch_related_objects(
            [ticket], Prefetch("merged_into", Ticket.objects.only("id", "ticket_number", "subject"))
        )
    return ticket


@dataclass(frozen=True, slots=True)
class TicketRef:
    pk: int
    ticket_number: int


@dataclass(slots=True, eq=False)
class ThreadComment:
    """A comment as the ticket pages show it (``comments_for``): its columns, its author and,
    for a comment a merge moved here, the ticket it came from; ``depth`` and ``replies`` place
    it in the thread."""

    id: int
    ticket_id: int
    body: str
    is_internal: bool
    parent_id: int | None
    created_at: dt.datetime
    merged_from: TicketRef | None
    author: RowPerson
    depth: int = 0
    replies: list[ThreadComment] = field(default_factory=list)

    @property
    def pk(self) -> int:
        return self.id

    @property
    def author_id(self) -> int:
        return self.author.pk


# ThreadComment's first fields, in order (comments_for reads created_at last).
THREAD_COLUMNS = ("id", "ticket_id", "body", "is_internal", "parent_id", "created_at")


# A thread's rows: the THREAD_COLUMNS (created_at as epoch_us, see there), the
# ticket a merge moved the comment from (id and number), then the author's USER_FIELDS.
# Prepared once per connection (planning the join with the tickets table cost more than
# running it); the customer's thread is a statement of its own that never reads a note.
_THREAD_SQL = f"""
    SELECT c.id, c.ticket_id, c.body, c.is_internal, c.parent_id,
           {epoch_us("c.created_at")},
           c.merged_from_id, m.ticket_number,
           {", ".join(f"u.{name}" for name in USER_FIELDS)}
      FROM tickets_comment c
      JOIN auth_user u ON u.id = c.author_id
      LEFT JOIN tickets_ticket m ON m.id = c.merged_from_id
     WHERE c.ticket_id = %(ticket)s{{public}}
     ORDER BY c.created_at, c.id
"""  # noqa: S608 - constants only; the ticket id is a bound parameter
_THREAD = Statement("tickets_thread", _THREAD_SQL.format(public=""), [("ticket", "bigint")])
_PUBLIC_THREAD = Statement(
    "tickets_public_thread",
    _THREAD_SQL.format(public=" AND NOT c.is_internal"),
    [("ticket", "bigint")],
)


def comments_for(ticket: Ticket, *, include_internal: bool) -> list[ThreadComment]:
    """The ticket's comments in thread order (depth first, each level oldest first), one
    query. Each comment gets ``depth`` (0 for top level) and ``replies`` (its direct
    replies). A reply whose parent is hidden (an internal note, for a customer) shows at
    the top level.

    Read as values into ThreadComments, one RowPerson per author: a long thread has a few
    authors, and building a Comment and a User per row was most of the ticket's read time."""
    thread = _THREAD if include_internal else _PUBLIC_THREAD
    values = thread.execute({"ticket": ticket.pk}).fetchall()
    n = len(THREAD_COLUMNS)
    authors: dict[int, RowPerson] = {}
    comments: list[ThreadComment] = []
    for row in values:
        author = _person(authors, row[n + 2 :])
        merged_from = TicketRef(row[n], row[n + 1]) if row[n] is not None else None
        pk, ticket_id, body, is_internal, parent_id, created = row[:n]
        comments.append(
            ThreadComment(
                pk,
                ticket_id,
                body,
                is_internal,
                parent_id,
                cast(dt.datetime, from_epoch_us(created)),
                merged_from,
                author,
            )
        )
    by_id = {comment.pk: comment for comment in comments}
    roots: list[ThreadComment] = []
    for comment in comments:
        parent = by_id.get(comment.parent_id) if comment.parent_id else None
        (parent.replies if parent is not None else roots).append(comment)

    ordered: list[ThreadComment] = []
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        comment, depth = stack.pop()
        comment.depth = depth
        ordered.append(comment)
        stack.extend((reply, depth + 1) for reply in reversed(comment.replies))
    return ordered


EVENT_KIND_LABELS = dict(EventKind.choices)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One line of the ticket page's timeline (a TicketEvent's shown columns) and who did it
    (None for the system)."""

    pk: int
    kind: str
    from_value: str
    to_value: str
    created_at: dt.datetime
    actor: RowPerson | None

    def get_kind_display(self) -> str:
        return EVENT_KIND_LABELS.get(self.kind, self.kind)


# Prepared once per connection, like the thread (created_at as epoch_us, see there).
_TIMELINE = Statement(
    "tickets_timeline",
    f"""
    SELECT e.id, e.kind, e.from_value, e.to_value,
           {epoch_us("e.created_at")},
           {", ".join(f"u.{name}" for name in USER_FIELDS)}
      FROM tickets_ticketevent e
      LEFT JOIN auth_user u ON u.id = e.actor_id
     WHERE e.ticket_id = %(ticket)s
     ORDER BY e.created_at, e.id
""",  # noqa: S608 - constants only; the ticket id is a bound parameter
    [("ticket", "bigint")],
)


def timeline_for(ticket: Ticket) -> list[TimelineEvent]:
    """The ticket's activity timeline, oldest first, one query."""
    actors: dict[int, RowPerson] = {}
    events = []
    for pk, kind, from_value, to_value, created, *actor_columns in _TIMELINE.execute(
        {"ticket": ticket.pk}
    ).fetchall():
        actor = _person(actors, actor_columns) if actor_columns[0] is not None else None
        created_at = cast(dt.datetime, from_epoch_us(created))
        events.append(TimelineEvent(pk, kind, from_value, to_value, created_at, actor))
    return events


@dataclass(frozen=True, slots=True)
class OtherTicket:
    """One of the requester's other tickets, as the customer card lists it."""

    pk: int
    ticket_number: int
    subject: str
    status: str

    def get_status_display(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)


# The requester's latest other tickets, each row with how many they have in all and active
# (window counts over every other ticket, before the LIMIT). Prepared once per connection:
# planning it cost more than running it.
_OTHER_TICKETS = Statement(
    "tickets_other_tickets",
    """
    SELECT id, ticket_number, subject, status, count(*) OVER (),
           count(*) FILTER (WHERE status = ANY(%(active)s)) OVER ()
      FROM tickets_ticket
     WHERE requester_id = %(requester)s AND id <> %(ticket)s
     ORDER BY created_at DESC, id DESC
     LIMIT %(shown)s
""",
    [("requester", "bigint"), ("ticket", "bigint"), ("active", "text[]"), ("shown", "bigint")],
)


def customer_context(ticket: Ticket) -> dict:
    """What an agent needs to know about the requester: the customer (already loaded with
    the ticket), their latest other tickets (OtherTickets) and how many they have, open and
    in all. One query. Showing this is an access to personal data: the view records it with
    ``services.record_customer_context_viewed``."""
    rows = _OTHER_TICKETS.execute(
        {
            "requester": ticket.requester_id,
            "ticket": ticket.pk,
            "active": list(ACTIVE_STATUSES),
            "shown": OTHER_TICKETS_SHOWN,
        }
    ).fetchall()
    return {
        "customer": ticket.requester,
        "other_tickets": [OtherTicket(*row[:4]) for row in rows],
        "other_ticket_count": rows[0][4] if rows else 0,
        "other_open_count": rows[0][5] if rows else 0,
    }


def category_choices(*, include_inactive: bool = False) -> list[Category]:
    queryset = (
        Category.objects.all() if include_inactive else Category.objects.filter(is_active=True)
    )
    return list(queryset.order_by("position", "name"))


def category_slugs() -> list[str]:
    """Slugs of the categories new tickets may use, in picker order."""
    return list(
        Category.objects.filter(is_active=True)
        .order_by("position", "name")
        .values_list("slug", flat=True)
    )


def category_ids_by_slug() -> dict[str, int]:
    """Every category, retired ones too (old tickets keep them), slug → id, for filters."""
    return dict(Category.objects.order_by("position", "name").values_list("slug", "id"))


# Holders of tickets.change_ticket, directly or through a group: with superusers, who may work
# tickets (assignable_agents, the pages' agent pickers, the router's candidates in
# tickets/assignment.py).
# Written as SQL: the ORM's version joined nine tables, and compiling and planning it cost
# several times what running it did, on every queue and ticket page.
CHANGE_TICKET_HOLDERS = """
    SELECT up.user_id FROM auth_user_user_permissions up WHERE up.permission_id IN (
        SELECT p.id FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
         WHERE p.codename = 'change_ticket' AND ct.app_label = 'tickets')
    UNION
    SELECT ug.user_id FROM auth_user_groups ug
      JOIN auth_group_permissions gp ON gp.group_id = ug.group_id
     WHERE gp.permission_id IN (
        SELECT p.id FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
         WHERE p.codename = 'change_ticket' AND ct.app_label = 'tickets')
"""


def assignable_agents() -> QuerySet:
    """Active staff who may work tickets (hold ``tickets.change_ticket`` directly, through a
    group, or as superusers): the assignee picker and the assignee check."""
    return (
        User.objects.filter(
            Q(is_superuser=True) | Q(pk__in=RawSQL(CHANGE_TICKET_HOLDERS, ())),  # noqa: S611 - constant SQL
            is_active=True,
            is_staff=True,
        )
        .only(*USER_FIELDS)
        .order_by("first_name", "last_name", "username")
    )


# Views every agent has; ``query_string`` is the queue URL's query.
BUILTIN_VIEWS = (
    ("My open", "assignee=me&status=active"),
    ("Unassigned urgent", "assignee=none&priority=urgent&status=active"),
)


def _saved_views(own: Iterable) -> list[dict]:
    """The saved views a user picks from: the built-in ones first, then ``own`` ((id, name,
    query string) of the user's, by name)."""
    return [
        *(
            {"id": None, "name": name, "query_string": query, "builtin": True}
            for name, query in BUILTIN_VIEWS
        ),
        *(
            {"id": pk, "name": name, "query_string": query, "builtin": False}
            for pk, name, query in own
        ),
    ]


# --- the option lists of the queue and ticket pages ---------------------------------------------


@dataclass(frozen=True, slots=True)
class CategoryChoice:
    """A category as the pages' pickers and filters use it."""

    pk: int
    slug: str
    name: str
    is_active: bool


@dataclass(frozen=True, slots=True)
class CannedReplyChoice:
    """A canned reply as the comment form offers it."""

    pk: int
    title: str
    body: str


# Each list as one JSON array of arrays, in the order its own query would give (the ORDER BY
# inside json_agg sorts as an ORDER BY of the rows does).
_CATEGORY_LIST = """
    SELECT coalesce(json_agg(json_build_array(c.id, c.slug, c.name, c.is_active)
                             ORDER BY c.position, c.name), '[]')
      FROM tickets_category c
"""
_AGENT_LIST = f"""
    SELECT coalesce(json_agg(json_build_array(u.id, u.username, u.first_name, u.last_name,
                                              u.email, u.is_staff)
                             ORDER BY u.first_name, u.last_name, u.username), '[]')
      FROM auth_user u
     WHERE u.is_active AND u.is_staff AND (u.is_superuser OR u.id IN ({CHANGE_TICKET_HOLDERS}))
"""  # noqa: S608 - constant SQL

# The lists every queue page shows (categories, retired ones too; the user's saved views;
# the agents of the assignee pickers) and every ticket page (categories, agents, canned
# replies), each page's in one statement prepared once per connection: three ORM queries cost
# more to build and plan than to run, on every page.
_QUEUE_OPTIONS = Statement(
    "tickets_queue_options",
    f"""
    SELECT ({_CATEGORY_LIST}),
           (SELECT coalesce(json_agg(json_build_array(v.id, v.name, v.query_string)
                                     ORDER BY v.name), '[]')
              FROM tickets_savedview v WHERE v.user_id = %(user)s),
           ({_AGENT_LIST})
""",  # noqa: S608 - constants only; the user id is a bound parameter
    [("user", "bigint")],
)
_TICKET_OPTIONS = Statement(
    "tickets_ticket_options",
    f"""
    SELECT ({_CATEGORY_LIST}),
           ({_AGENT_LIST}),
           (SELECT coalesce(json_agg(json_build_array(r.id, r.title, r.body) ORDER BY r.title),
                            '[]')
              FROM tickets_cannedreply r)
""",  # noqa: S608 - constant SQL
    [],
)


@dataclass(frozen=True)
class QueueOptions:
    categories: list[CategoryChoice]  # every category, retired ones too (``is_active``)
    saved_views: list[dict]  # the built-in views, then the user's own by name
    agents: list[RowPerson]  # assignable_agents, in the same order


@dataclass(frozen=True)
class TicketOptions:
    categories: list[CategoryChoice]  # active categories only, as category_choices()
    agents: list[RowPerson]  # assignable_agents, in the same order
    canned_replies: list[CannedReplyChoice]  # by title


def queue_options(user) -> QueueOptions:
    """The queue page's option lists for ``user``, in one query."""
    categories, views, agents = _QUEUE_OPTIONS.execute({"user": user.pk}).fetchone()
    return QueueOptions(
        categories=[CategoryChoice(*row) for row in categories],
        saved_views=_saved_views(views),
        agents=[RowPerson(*row) for row in agents],
    )


def ticket_options() -> TicketOptions:
    """The ticket page's option lists, in one query."""
    categories, agents, replies = _TICKET_OPTIONS.execute({}).fetchone()
    return TicketOptions(
        categories=[CategoryChoice(*row) for row in categories if row[3]],
        agents=[RowPerson(*row) for row in agents],
        canned_replies=[CannedReplyChoice(*row) for row in replies],
    )


# --- reads for the console pages (views.py) ---------------------------------------------------


def saved_view_for(user, view_id) -> SavedView:
    """One of ``user``'s own saved views, else Http404 (another user's view looks absent)."""
    try:
        return SavedView.objects.get(pk=int(view_id), user=user)
    except (TypeError, ValueError, SavedView.DoesNotExist):
        raise Http404("No such saved view.") from None


def changed_by_others(ticket: Ticket, *, since, user) -> list:
    """The people other than ``user`` who changed ``ticket`` after ``since``: a timeline
    event or a comment of theirs (one query). The ticket page's collision notice uses it, so
    a viewer's own changes never tell them to reload."""
    event_actors = (
        TicketEvent.objects.filter(ticket_id=ticket.pk, created_at__gt=since)
        .exclude(actor_id=user.pk)
        .values("actor_id")
    )
    comment_authors = (
        Comment.objects.filter(ticket_id=ticket.pk, created_at__gt=since)
        .exclude(author_id=user.pk)
        .values("author_id")
    )
    return list(
        User.objects.filter(Q(pk__in=event_actors) | Q(pk__in=comment_authors))
        .only(*USER_FIELDS)
        .order_by("first_name", "last_name", "username")
    )


# --- SLA and assignment (the SLA report, the agents page, notifications) ----------------------


def sla_history(ticket: Ticket) -> list:
    """The ticket's SLA targets, first response first, each cycle in order (one query)."""
    from tickets.models import SLATarget

    return list(SLATarget.objects.filter(ticket_id=ticket.pk).order_by("kind", "cycle"))


@dataclass
class ComplianceRow:
    key: object
    label: str
    first_met: int = 0
    first_total: int = 0
    resolution_met: int = 0
    resolution_total: int = 0
    avg_overrun_seconds: float | None = None

    @staticmethod
    def _pct(met: int, total: int) -> float | None:
        return round(100 * met / total, 1) if total else None

    @property
    def first_pct(self) -> float | None:
        return self._pct(self.first_met, self.first_total)

    @property
    def resolution_pct(self) -> float | None:
        return self._pct(self.resolution_met, self.resolution_total)

    @property
    def overall_pct(self) -> float | None:
        return self._pct(
            self.first_met + self.resolution_met, self.first_total + self.resolution_total
        )


REPORT_DIMENSIONS = ("priority", "agent", "category", "week")


def sla_compliance(*, since, until, zone: str) -> dict[str, list[ComplianceRow]]:
    """SLA compliance of the targets that ended (met or breached) or breached between
    ``since`` and ``until``, per priority, agent, category and week (weeks start on Monday
    in ``zone``), plus ``total``: one aggregate query (GROUPING SETS) and one for names."""
    sql = """
        SELECT GROUPING(priority), GROUPING(assignee_id), GROUPING(category_id), GROUPING(week),
               priority, assignee_id, category_id, week,
               count(*) FILTER (WHERE kind = 'first_response' AND outcome = 'met'),
               count(*) FILTER (WHERE kind = 'first_response'),
               count(*) FILTER (WHERE kind = 'resolution' AND outcome = 'met'),
               count(*) FILTER (WHERE kind = 'resolution'),
               avg(-margin_seconds) FILTER (WHERE outcome = 'breached')
          FROM (SELECT kind, priority, assignee_id, category_id, margin_seconds,
                       CASE WHEN outcome = 'running' THEN 'breached' ELSE outcome END AS outcome,
                       date_trunc('week', coalesce(completed_at, breached_at) AT TIME ZONE %(zone)s)::date
                         AS week
                  FROM tickets_slatarget
                 WHERE (outcome IN ('met', 'breached') AND completed_at >= %(since)s
                        AND completed_at < %(until)s)
                    OR (outcome = 'running' AND breached_at >= %(since)s AND breached_at < %(until)s)
               ) AS ended
         GROUP BY GROUPING SETS ((priority), (assignee_id), (category_id), (week), ())
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"since": since, "until": until, "zone": zone})
        raw = cursor.fetchall()
    agent_ids = {row[5] for row in raw if row[1] == 0 and row[5] is not None}
    category_ids = {row[6] for row in raw if row[2] == 0}
    agents = {u.pk: u for u in User.objects.filter(pk__in=agent_ids).only(*USER_FIELDS)}
    categories = dict(Category.objects.filter(pk__in=category_ids).values_list("pk", "name"))
    from adminsite.users import user_label

    result: dict[str, list[ComplianceRow]] = {name: [] for name in (*REPORT_DIMENSIONS, "total")}
    priority_labels = dict(Priority.choices)
    for g_p, g_a, g_c, g_w, priority, agent_id, category_id, week, *counts in raw:
        if not g_p:
            dimension, key, label = "priority", priority, priority_labels.get(priority, priority)
        elif not g_a:
            dimension, key = "agent", agent_id
            label = user_label(agents[agent_id]) if agent_id in agents else "Unassigned"
        elif not g_c:
            dimension, key = "category", category_id
            label = categories.get(category_id, f"Category {category_id}")
        elif not g_w:
            dimension, key, label = "week", week, f"Week of {week:%-d %b %Y}"
        else:
            dimension, key, label = "total", None, "All targets"
        first_met, first_total, res_met, res_total, overrun = counts
        result[dimension].append(
            ComplianceRow(
                key=key,
                label=label,
                first_met=first_met,
                first_total=first_total,
                resolution_met=res_met,
                resolution_total=res_total,
                avg_overrun_seconds=float(overrun) if overrun is not None else None,
            )
        )
    # Two agents with the same name are told apart by their usernames (charts group by label).
    names = [r.label for r in result["agent"]]
    for row in result["agent"]:
        if row.key in agents and names.count(row.label) > 1:
            row.label = f"{row.label} ({agents[row.key].get_username()})"
    rank = {value: n for n, value in enumerate(Priority.values)}
    result["priority"].sort(key=lambda r: -rank.get(cast(str, r.key), -1))
    result["agent"].sort(key=lambda r: (r.key is None, r.label.lower()))
    result["category"].sort(key=lambda r: r.label.lower())
    result["week"].sort(key=lambda r: cast(dt.date, r.key))
    return result


def agent_loads() -> list[dict]:
    """Every agent who works tickets with availability, cap, active tickets and teams (three
    queries whatever the number of agents)."""
    from tickets.assignment import open_loads
    from tickets.models import AgentProfile

    agents = list(assignable_agents().prefetch_related("support_teams"))
    profiles = {p.user_id: p for p in AgentProfile.objects.filter(user__in=[a.pk for a in agents])}
    loads = open_loads([a.pk for a in agents])
    rows = []
    for agent in agents:
        profile = profiles.get(agent.pk)
        cap = (
            profile.max_open_tickets
            if profile
            else AgentProfile._meta.get_field("max_open_tickets").default
        )
        load = loads.get(agent.pk, 0)
        rows.append(
            {
                "agent": agent,
                "available": profile.is_available if profile else True,
                "cap": cap,
                "load": load,
                "percent": min(100, round(100 * load / cap)) if cap else 100,
                "at_cap": load >= cap,
                "teams": [t.name for t in agent.support_teams.all()],
                "last_assigned_at": profile.last_assigned_at if profile else None,
            }
        )
    return rows


def my_status(user) -> dict:
    """The signed-in staff member's availability and unread notifications (two queries)."""
    from tickets.models import AgentProfile, SupportNotification

    profile = AgentProfile.objects.filter(user=user).only("is_available").first()
    unread = SupportNotification.objects.filter(user=user, read_at__isnull=True).count()
    return {"available": profile.is_available if profile else True, "unread": unread}


NOTIFICATIONS_SHOWN = 100


def notifications_for(user) -> list:
    """The user's latest notifications with their tickets (one query)."""
    from tickets.models import SupportNotification

    return list(
        SupportNotification.objects.filter(user=user)
        .select_related("ticket")
        .only(
            "id",
            "kind",
            "message",
            "created_at",
            "read_at",
            "ticket__id",
            "ticket__ticket_number",
            "ticket__subject",
            "ticket__status",
        )
        .order_by("-created_at", "-id")[:NOTIFICATIONS_SHOWN]
    )
