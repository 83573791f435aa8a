"""Queue filters: one parser for the queue page's query string and the list API's parameters.

``parse_filters`` turns a QueryDict into a validated :class:`TicketFilters` or raises
:class:`FilterError` whose ``errors`` name each bad parameter and what it accepts. The same
names are used in URLs and the API (``status``, ``priority``, ``category``, ``assignee``,
``breached``, ``search``, ``tag``, ``requester``, ``createdAfter``, ``createdBefore``,
``ordering``), so a queue URL, a saved view and an API call read the same.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from django.http import QueryDict
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from tickets.models import ACTIVE_STATUSES, Priority, Status

SEARCH_MAX_LENGTH = 200
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# Ordering keys (URL/API value) → ORDER BY columns. Every key ends in a unique column so pages
# never overlap, and each has an index walk for the active scope (see Ticket.Meta.indexes).
ORDERINGS: dict[str, tuple[str, ...]] = {
    "-priority": ("-priority_rank", "created_at", "id"),  # most urgent first, then oldest
    "priority": ("priority_rank", "-created_at", "-id"),
    "nextDueAt": ("next_due_at", "id"),  # soonest deadline first; no deadline last
    "-nextDueAt": ("-next_due_at", "-id"),
    "-createdAt": ("-created_at", "-id"),
    "createdAt": ("created_at", "id"),
    "-updatedAt": ("-updated_at", "-id"),
    "updatedAt": ("updated_at", "id"),
    "-ticketNumber": ("-ticket_number",),
    "ticketNumber": ("ticket_number",),
}
DEFAULT_QUEUE_ORDERING = "-priority"
DEFAULT_API_ORDERING = "-createdAt"

STATUS_ALIASES = {"active": ACTIVE_STATUSES, "all": tuple(Status.values)}

STAFF_PARAMS = frozenset(
    {
        "status",
        "priority",
        "category",
        "assignee",
        "breached",
        "search",
        "tag",
        "requester",
        "createdAfter",
        "createdBefore",
        "ordering",
    }
)
# Customers see only their own tickets and never search: the search vector covers internal
# notes, so matching against it would reveal their words.
CUSTOMER_PARAMS = frozenset(
    {"status", "priority", "category", "createdAfter", "createdBefore", "ordering"}
)


class FilterError(Exception):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class TicketFilters:
    statuses: tuple[str, ...] = ACTIVE_STATUSES
    priorities: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # slugs, as given
    category_ids: tuple[int, ...] = ()  # the same categories, as the rows store them
    # None: anyone; "none": unassigned; an int: that user's id ("me" is resolved on parsing).
    assignee: int | str | None = None
    assignee_is_me: bool = False
    breached: bool | None = None
    search: str = ""
    tags: tuple[str, ...] = ()
    requester_id: int | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    ordering: str = DEFAULT_QUEUE_ORDERING
    # Query-string values as given, for building links that keep the filters.
    raw: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def order_by(self) -> tuple[str, ...]:
        return ORDERINGS[self.ordering]

    @property
    def is_active_scope(self) -> bool:
        return set(self.statuses) <= set(ACTIVE_STATUSES)

    @property
    def facets_only(self) -> bool:
        """True when every filter is a facet the counters keep (status, priority, category,
        assignee, breach), so counts need not touch the tickets."""
        return not (
            self.search
            or self.tags
            or self.requester_id is not None
            or self.created_after is not None
            or self.created_before is not None
        )

    def querystring(self, **overrides: str | None) -> str:
        """The filters as a query string, with ``overrides`` applied (None removes a key)."""
        params = {**self.raw}
        for key, value in overrides.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        return urlencode(sorted(params.items()))

    def with_ordering(self, ordering: str) -> TicketFilters:
        return replace(self, ordering=ordering, raw={**self.raw, "ordering": ordering})


def _values(params: QueryDict, name: str) -> list[str]:
    """Repeated parameters and comma-separated lists both work: ``status=open&status=new``
    or ``status=open,new``."""
    out: list[str] = []
    for raw in params.getlist(name):
        out.extend(part.strip() for part in raw.split(","))
    return [v for v in out if v]


def _choices(params, name, allowed, errors, *, aliases=None) -> tuple[str, ...] | None:
    values = _values(params, name)
    if not values:
        return None
    chosen: list[str] = []
    for value in values:
        if aliases and value in aliases:
            chosen.extend(aliases[value])
        elif value in allowed:
            chosen.append(value)
        else:
            names = ", ".join([*allowed, *(aliases or {})])
            errors[name] = f"Unknown value {value!r}. Allowed values: {names}."
            return None
    # Keep the canonical order so the same set always yields the same SQL (and plan).
    return tuple(v for v in allowed if v in set(chosen))


def _parse_moment(value: str, *, end_of_day: bool) -> dt.datetime | None:
    """A date means the whole day: from its start (after) or up to its end (before)."""
    try:
        day = parse_date(value) if _DATE_ONLY.match(value) else None
        moment = None if day else parse_datetime(value)
    except ValueError:  # well-formed but impossible, like 2025-02-30
        return None
    if day is not None:
        if end_of_day:
            day += dt.timedelta(days=1)
        return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
    if moment is not None and timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def _positive_int(value: str) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if 0 < number < 2**63 else None


def parse_filters(
    params: QueryDict,
    *,
    user,
    default_statuses: tuple[str, ...] = ACTIVE_STATUSES,
    default_ordering: str = DEFAULT_QUEUE_ORDERING,
    category_slugs: list[str] | dict[str, int] | None = None,
    extra_params: frozenset[str] = frozenset(),
) -> TicketFilters:
    """Validate ``params`` for ``user``; raise FilterError naming every bad parameter.

    ``category_slugs`` are the known category slugs: a dict slug → id spares a query; with a
    list, or None, the ids are read when a category filter is present. ``extra_params`` are
    names the caller handles itself (``page``, ``pageSize``)."""
    errors: dict[str, str] = {}
    allowed = STAFF_PARAMS if user.is_staff else CUSTOMER_PARAMS
    for name in params:
        if name not in allowed and name not in extra_params:
            known = ", ".join(sorted(allowed | extra_params))
            errors[name] = f"Unknown parameter. Allowed parameters: {known}."

    raw = {name: ",".join(params.getlist(name)) for name in params if name in allowed}
    values: dict = {}

    statuses = _choices(params, "status", list(Status.values), errors, aliases=STATUS_ALIASES)
    values["statuses"] = statuses if statuses else default_statuses
    priorities = _choices(params, "priority", list(Priority.values), errors)
    if priorities:
        values["priorities"] = priorities

    wanted_categories = _values(params, "category")
    if wanted_categories:
        if isinstance(category_slugs, dict):
            slug_ids = category_slugs
        else:
            from tickets.queries import category_ids_by_slug

            slug_ids = category_ids_by_slug()
            if category_slugs is not None:
                slug_ids = {slug: slug_ids[slug] for slug in category_slugs if slug in slug_ids}
        unknown = [slug for slug in wanted_categories if slug not in slug_ids]
        if unknown:
            errors["category"] = (
                f"Unknown category {unknown[0]!r}. Allowed values: {', '.join(slug_ids)}."
            )
        else:
            slugs = tuple(dict.fromkeys(wanted_categories))
            values["categories"] = slugs
            values["category_ids"] = tuple(slug_ids[slug] for slug in slugs)

    assignee = params.get("assignee", "").strip()
    if assignee:
        if assignee == "me":
            values["assignee"] = user.pk
            values["assignee_is_me"] = True
        elif assignee == "none":
            values["assignee"] = "none"
        elif (assignee_id := _positive_int(assignee)) is not None:
            values["assignee"] = assignee_id
        else:
            errors["assignee"] = "Use 'me', 'none' or a user id."

    breached = params.get("breached", "").strip().lower()
    if breached:
        if breached in {"true", "1", "yes"}:
            values["breached"] = True
        elif breached in {"false", "0", "no"}:
            values["breached"] = False
        else:
            errors["breached"] = "Use true or false."

    search = " ".join(params.get("search", "").split())
    if len(search) > SEARCH_MAX_LENGTH:
        errors["search"] = f"At most {SEARCH_MAX_LENGTH} characters."
    elif search:
        values["search"] = search

    tags = _values(params, "tag")
    if tags:
        values["tags"] = tuple(dict.fromkeys(t.lower() for t in tags))

    requester = params.get("requester", "").strip()
    if requester:
        if (requester_id := _positive_int(requester)) is None:
            errors["requester"] = "Use a user id."
        else:
            values["requester_id"] = requester_id

    for name, key, end in (
        ("createdAfter", "created_after", False),
        ("createdBefore", "created_before", True),
    ):
        value = params.get(name, "").strip()
        if value:
            moment = _parse_moment(value, end_of_day=end)
            if moment is None:
                errors[name] = "Use a date (2025-01-31) or an ISO 8601 date-time."
            else:
                values[key] = moment
    if (
        values.get("created_after")
        and values.get("created_before")
        and values["created_after"] >= values["created_before"]
    ):
        errors["createdBefore"] = "Must be later than createdAfter."

    ordering = params.get("ordering", "").strip() or default_ordering
    if ordering not in ORDERINGS:
        errors["ordering"] = (
            f"Unknown ordering {ordering!r}. Allowed values: {', '.join(ORDERINGS)}."
        )
    else:
        values["ordering"] = ordering

    if errors:
        raise FilterError(errors)
    return TicketFilters(raw=raw, **values)
