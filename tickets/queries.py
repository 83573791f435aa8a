"""Reads shared by the console pages, the help pages and the JSON API.

Each function runs a fixed number of SQL queries whatever the data size (asserted in
tests/tickets/test_queries.py). Object access starts from what the user may see:
:func:`ticket_for` is the only way an id from a URL becomes a ticket.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet, Sum, Window
from django.http import Http404

from tickets.filters import TicketFilters
from tickets.models import (
    ACTIVE,
    CannedReply,
    Category,
    Comment,
    Priority,
    SavedView,
    Status,
    Ticket,
    TicketCount,
    TicketEvent,
)
from tickets.search import search_condition

User = get_user_model()

# Columns of a user that ticket pages and JSON show; never the password hash.
USER_FIELDS = ("id", "username", "first_name", "last_name", "email", "is_staff")
OTHER_TICKETS_SHOWN = 10


def _related_user_fields(*relations: str) -> list[str]:
    return [f"{relation}__{name}" for relation in relations for name in USER_FIELDS]


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
    """Tickets ``user`` may see, filtered and ordered: the queue page's rows and the list
    API's results. Slice it for a page; it loads category, requester and assignee in the
    same query."""
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
    the ticket count; scopes with search, tags, requester or dates count the tickets."""
    capped = False
    if filters.facets_only:
        queryset, n = _facet_counts(filters), "n"
        total = Sum
    else:
        # Counting ``status`` (never null) rather than ``id``: every column the aggregate
        # reads is in the covering index ticket_active_stats (an index-only scan when active).
        queryset, n = apply_filters(Ticket.objects.all(), filters), "status"
        total = Count
        if filters.search:
            # A common word matches a third of a million tickets; counting them all reads the
            # whole table. The counts stop at SEARCH_COUNT_LIMIT (shown "1,000+"), as search
            # engines do, and the pages with them: nobody pages past 20 pages of hits.
            queryset = queryset.order_by().values("status", "priority", "sla_breached")[
                : SEARCH_COUNT_LIMIT + 1
            ]
            capped = True
    stats = queryset.aggregate(
        total=total(n),
        open=total(n, filter=Q(status__in=(Status.NEW, Status.OPEN))),
        pending=total(n, filter=Q(status=Status.PENDING)),
        urgent=total(n, filter=ACTIVE & Q(priority=Priority.URGENT)),
        breached=total(n, filter=ACTIVE & Q(sla_breached=True)),
    )
    counts = {key: int(value or 0) for key, value in stats.items()}
    # Over the limit, every figure counts the first SEARCH_COUNT_LIMIT hits only: a lower
    # bound, which the page marks with a "+".
    counts["capped"] = capped and counts["total"] > SEARCH_COUNT_LIMIT
    if counts["capped"]:
        counts["total"] = SEARCH_COUNT_LIMIT
    return counts


def _facet_counts(filters: TicketFilters) -> QuerySet:
    q = Q() if set(filters.statuses) >= set(Status.values) else Q(status__in=filters.statuses)
    if filters.priorities:
        q &= Q(priority__in=filters.priorities)
    if filters.category_ids:
        q &= Q(category_id__in=filters.category_ids)
    if filters.assignee == "none":
        q &= Q(assignee_key=0)
    elif filters.assignee is not None:
        q &= Q(assignee_key=filters.assignee)
    if filters.breached is not None:
        q &= Q(sla_breached=filters.breached)
    return TicketCount.objects.filter(q)


def ticket_count(*, user, filters: TicketFilters) -> int:
    """How many tickets ``ticket_queue`` would list (the list API's ``count``): from the
    counters for staff with facet-only filters, else a count of the visible tickets."""
    sees_all = user.is_staff and user.has_perm("tickets.view_ticket")
    if sees_all and filters.facets_only:
        return _facet_counts(filters).aggregate(total=Sum("n"))["total"] or 0
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
    tickets: list[Ticket]
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


# What a queue row shows (the staff queue and the customer's list of requests): building 50
# tickets a page is a good part of the page's time, and it grows with every column loaded.
QUEUE_ROW_FIELDS = (
    "id",
    "ticket_number",
    "subject",
    "category",
    "priority",
    "status",
    "requester",
    "assignee",
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
    "category__slug",
    "category__name",
)


def queue_page(*, user, filters: TicketFilters, page: int = 1, per_page: int = 50) -> QueuePage:
    """One page of the staff queue with its statistics: two queries, the stats' total
    serving as the page count. A page past the end shows the last page. The tickets carry
    the QUEUE_ROW_FIELDS only (no description)."""
    stats = queue_stats(filters=filters)
    last_page = max(1, -(-stats["total"] // per_page))
    number = min(max(1, page), last_page)
    offset = (number - 1) * per_page
    rows = page_slice(
        ticket_queue(user=user, filters=filters).only(
            *QUEUE_ROW_FIELDS, *_related_user_fields("requester", "assignee")
        ),
        offset,
        offset + per_page,
        id_source=ticket_queue_ids(user=user, filters=filters),
    )
    return QueuePage(tickets=rows, stats=stats, number=number, per_page=per_page)


def ticket_for(user, ticket_id) -> Ticket:
    """The ticket with ``ticket_id`` if ``user`` may see it, else Http404 — also for another
    customer's ticket, so ids never reveal what exists."""
    try:
        pk = int(ticket_id)
    except (TypeError, ValueError):
        raise Http404("No such ticket.") from None
    if not 0 < pk < 2**63:
        raise Http404("No such ticket.")
    queryset = (
        Ticket.objects.visible_to(user)
        .select_related("category", "requester", "assignee", "merged_into")
        .defer("merged_into__search_vector", "merged_into__description")
    )
    try:
        return queryset.get(pk=pk)
    except Ticket.DoesNotExist:
        raise Http404("No such ticket.") from None


def comments_for(ticket: Ticket, *, include_internal: bool) -> list[Comment]:
    """The ticket's comments in thread order (depth first, each level oldest first), one
    query. Each comment gets ``depth`` (0 for top level) and ``replies`` (its direct
    replies). A reply whose parent is hidden (an internal note, for a customer) shows at
    the top level."""
    queryset = (
        Comment.objects.filter(ticket_id=ticket.pk)
        .select_related("author", "merged_from")
        .only(
            "id",
            "ticket_id",
            "body",
            "is_internal",
            "parent_id",
            "created_at",
            "merged_from__id",
            "merged_from__ticket_number",
            *_related_user_fields("author"),
        )
        .order_by("created_at", "id")
    )
    if not include_internal:
        queryset = queryset.filter(is_internal=False)
    comments = list(queryset)
    by_id = {comment.pk: comment for comment in comments}
    roots: list[Comment] = []
    for comment in comments:
        comment.replies = []
    for comment in comments:
        parent = by_id.get(comment.parent_id) if comment.parent_id else None
        (parent.replies if parent is not None else roots).append(comment)

    ordered: list[Comment] = []
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        comment, depth = stack.pop()
        comment.depth = depth
        ordered.append(comment)
        stack.extend((reply, depth + 1) for reply in reversed(comment.replies))
    return ordered


def timeline_for(ticket: Ticket) -> list[TicketEvent]:
    """The ticket's activity timeline, oldest first, one query."""
    return list(
        TicketEvent.objects.filter(ticket_id=ticket.pk)
        .select_related("actor")
        .only(
            "id",
            "ticket_id",
            "kind",
            "from_value",
            "to_value",
            "created_at",
            *_related_user_fields("actor"),
        )
        .order_by("created_at", "id")
    )


def customer_context(ticket: Ticket) -> dict:
    """What an agent needs to know about the requester: the customer (already loaded with
    the ticket), their latest other tickets and how many they have, open and in all. One
    query. Showing this is an access to personal data: the view records it with
    ``services.record_customer_context_viewed``."""
    others = list(
        Ticket.objects.filter(requester_id=ticket.requester_id)
        .exclude(pk=ticket.pk)
        .only("id", "ticket_number", "subject", "status", "priority", "created_at")
        .annotate(
            total_count=Window(Count("*")),
            open_count=Window(Count("status", filter=ACTIVE)),
        )
        .order_by("-created_at", "-id")[:OTHER_TICKETS_SHOWN]
    )
    return {
        "customer": ticket.requester,
        "other_tickets": others,
        "other_ticket_count": others[0].total_count if others else 0,
        "other_open_count": others[0].open_count if others else 0,
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


def assignable_agents() -> QuerySet:
    """Active staff who may work tickets (hold ``tickets.change_ticket`` directly, through a
    group, or as superusers): the assignee picker and the assignee check."""
    direct = Q(
        user_permissions__codename="change_ticket",
        user_permissions__content_type__app_label="tickets",
    )
    via_group = Q(
        groups__permissions__codename="change_ticket",
        groups__permissions__content_type__app_label="tickets",
    )
    candidates = User.objects.filter(Q(is_superuser=True) | direct | via_group).values("pk")
    return (
        User.objects.filter(is_active=True, is_staff=True, pk__in=candidates)
        .only(*USER_FIELDS)
        .order_by("first_name", "last_name", "username")
    )


def canned_replies() -> list[CannedReply]:
    return list(CannedReply.objects.only("id", "title", "body").order_by("title"))


# Views every agent has; ``query_string`` is the queue URL's query.
BUILTIN_VIEWS = (
    ("My open", "assignee=me&status=active"),
    ("Unassigned urgent", "assignee=none&priority=urgent&status=active"),
)


def saved_views_for(user) -> list[dict]:
    """Built-in views first, then the user's own (one query)."""
    own = SavedView.objects.filter(user=user).only("id", "name", "query_string").order_by("name")
    return [
        *(
            {"id": None, "name": name, "query_string": query, "builtin": True}
            for name, query in BUILTIN_VIEWS
        ),
        *(
            {"id": v.pk, "name": v.name, "query_string": v.query_string, "builtin": False}
            for v in own
        ),
    ]


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
