"""Reads of the audit trail shared by the viewer, its export and other modules' pages.

Every list read is keyset-paginated on (timestamp, id), newest first, and each filter has an
index that ends in that key (see ``AuditEntry.Meta.indexes``), so the first page of a filtered
list is an index range scan that stops after 51 rows, whatever the size of the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.db import connection, models
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry

PAGE_SIZE = 50

# Must match the expression of the GIN index audit_search_idx (migration 0002) exactly.
SEARCH_VECTOR_SQL = (
    "to_tsvector('simple'::regconfig, event || ' ' || actor_name || ' ' || actor_email || ' '\n"
    "        || impersonator_name || ' ' || object_repr || ' ' || coalesce(cid, ''))"
)
# In queries, with the columns qualified (other tables may be joined); the planner matches the
# index by the columns it reads, not by their spelling.
_SEARCH_VECTOR = re.sub(
    r"\b(event|actor_name|actor_email|impersonator_name|object_repr|cid)\b",
    r"audit_auditentry.\1",
    re.sub(r"\s+", " ", SEARCH_VECTOR_SQL),
)
_WORD = re.compile(r"[\w@.+-]*\w[\w@.+-]*")

LIST_FIELDS = (
    "id", "timestamp", "event", "action", "source", "actor_id", "actor_name", "impersonator_id",
    "impersonator_name", "content_type_id", "object_pk", "object_repr", "changes", "remote_addr", "cid",
)  # fmt: skip


def history_url(obj: models.Model) -> str:
    """The viewer filtered to ``obj``'s entries: the "History" link of a ticket, customer,
    alert rule or order page."""
    content_type = ContentType.objects.get_for_model(obj, for_concrete_model=False)
    query = urlencode(
        {"target_type": f"{content_type.app_label}.{content_type.model}", "target_id": str(obj.pk)}
    )
    return f"{reverse('audit:list')}?{query}"


def target_type_label(content_type_id: int | None) -> str:
    """``app_label.model`` of a content type id. Entries outlive the models they describe (a
    removed model's content type goes, its entries stay), so a missing type is named by id."""
    if content_type_id is None:
        return ""
    try:
        content_type = ContentType.objects.get_for_id(content_type_id)
    except ContentType.DoesNotExist:
        return f"removed-type-{content_type_id}"
    return f"{content_type.app_label}.{content_type.model}"


@dataclass(frozen=True)
class Cursor:
    """A position in the newest-first order: entries strictly older (``before``) or newer."""

    timestamp: datetime
    id: int

    def encode(self) -> str:
        micros = (self.timestamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        return f"{micros}.{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        """Raises ValueError with a message naming the problem."""
        match = re.fullmatch(r"(-?\d{1,19})\.(\d{1,19})", value or "")
        if not match:
            raise ValueError("not a page position from this viewer (expected <microseconds>.<id>)")
        try:
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(match.group(1)))
        except OverflowError:
            raise ValueError("the page position is out of range") from None
        return cls(moment, int(match.group(2)))

    @classmethod
    def of(cls, entry: AuditEntry) -> Cursor:
        return cls(entry.timestamp, entry.id)


@dataclass
class Filters:
    """Validated filters (audit.views parses them from the query string)."""

    actor_id: int | None = None
    actor_system: bool = False
    event: str = ""
    event_prefix: str = ""
    content_type_id: int | None = None
    target_id: str = ""
    since: datetime | None = None
    until: datetime | None = None
    impersonated: bool = False
    search_words: list[str] = field(default_factory=list)
    request_id: str = ""

    def apply(self, queryset: models.QuerySet) -> models.QuerySet:
        if self.actor_id is not None:
            queryset = queryset.filter(actor_id=self.actor_id)
        if self.actor_system:
            queryset = queryset.filter(actor_id__isnull=True, actor_name="system")
        if self.event:
            queryset = queryset.filter(event=self.event)
        if self.event_prefix:
            queryset = queryset.filter(event__startswith=self.event_prefix)
        if self.content_type_id is not None:
            queryset = queryset.filter(content_type_id=self.content_type_id)
        if self.target_id:
            queryset = queryset.filter(object_pk=self.target_id)
        if self.since is not None:
            queryset = queryset.filter(timestamp__gte=self.since)
        if self.until is not None:
            queryset = queryset.filter(timestamp__lt=self.until)
        if self.impersonated:
            queryset = queryset.filter(impersonator_id__isnull=False)
        if self.search_words:
            queryset = queryset.filter(_matches(tsquery_prefix(self.search_words)))
        if self.request_id:
            # The request id is a word of the search vector, so the GIN index finds it; the
            # exact comparison then drops entries that merely share the word.
            queryset = queryset.filter(
                _matches(tsquery_exact(self.request_id)), cid=self.request_id
            )
        return queryset

    def as_params(self) -> dict[str, str | int]:
        """The filters for the audit.exported entry: what was exported."""
        params = {
            "actor_id": self.actor_id, "actor": "system" if self.actor_system else None,
            "event": self.event or (self.event_prefix + "*" if self.event_prefix else None),
            "target_type": target_type_label(self.content_type_id) or None, "target_id": self.target_id or None,
            "since": self.since.isoformat() if self.since else None, "until": self.until.isoformat() if self.until else None,
            "impersonated": self.impersonated or None, "q": " ".join(self.search_words) or None,
            "request_id": self.request_id or None,
        }  # fmt: skip
        return {key: value for key, value in params.items() if value is not None}


def _matches(tsquery: str) -> RawSQL:
    # The SQL is a constant (the index expression); the user's words go in as a parameter.
    return RawSQL(  # noqa: S611
        f"{_SEARCH_VECTOR} @@ to_tsquery('simple'::regconfig, %s)",
        [tsquery],
        output_field=BooleanField(),
    )


def _quote_lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsquery_prefix(words: list[str]) -> str:
    """Every word, as a prefix: "ali refund" finds "alice@example.com" and "order.refunded"."""
    return " & ".join(f"{_quote_lexeme(word.lower())}:*" for word in words)


def tsquery_exact(word: str) -> str:
    return _quote_lexeme(word.lower())


def search_words(text: str) -> list[str]:
    return _WORD.findall(text)[:10]


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in the viewer's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


@dataclass
class Page:
    entries: list[AuditEntry]
    older: Cursor | None
    newer: Cursor | None


def entry_page(filters: Filters, *, before: Cursor | None = None, after: Cursor | None = None,
               size: int = PAGE_SIZE) -> Page:  # fmt: skip
    """One page of entries, newest first, starting after ``before`` (older entries) or ending
    before ``after`` (newer entries). One query."""
    queryset = filters.apply(AuditEntry.objects.only(*LIST_FIELDS))
    if after is not None:
        rows = list(
            queryset.filter(
                Q(timestamp__gt=after.timestamp) | Q(timestamp=after.timestamp, id__gt=after.id)
            ).order_by("timestamp", "id")[: size + 1]
        )
        has_more_newer = len(rows) > size
        entries = list(reversed(rows[:size]))
        return Page(entries, Cursor.of(entries[-1]) if entries else None,
                    Cursor.of(entries[0]) if entries and has_more_newer else None)  # fmt: skip
    if before is not None:
        queryset = queryset.filter(
            Q(timestamp__lt=before.timestamp) | Q(timestamp=before.timestamp, id__lt=before.id)
        )
    rows = list(queryset.order_by("-timestamp", "-id")[: size + 1])
    entries = rows[:size]
    older = Cursor.of(entries[-1]) if len(rows) > size else None
    newer = Cursor.of(entries[0]) if before is not None and entries else None
    return Page(entries, older, newer)


def export_rows(filters: Filters):
    """Every entry matching ``filters``, newest first, with its chain link, streamed from a
    server-side cursor (constant memory). Iterate inside a transaction."""
    return (
        filters.apply(AuditEntry.objects.all())
        .order_by("-timestamp", "-id")
        .values_list(
            "id",
            "timestamp",
            "event",
            "actor_id",
            "actor_name",
            "impersonator_id",
            "impersonator_name",
            "content_type_id",
            "object_pk",
            "object_repr",
            "changes",
            "additional_data",
            "remote_addr",
            "user_agent",
            "cid",
            "source",
            "link__seq",
            "link__hash",
        )  # fmt: skip
        .iterator(chunk_size=2000)
    )


def entry_detail(entry_id: int) -> AuditEntry | None:
    return AuditEntry.objects.select_related("link").filter(pk=entry_id).first()


def _loose_scan(column: str, cache_key: str) -> list:
    """The distinct values of an indexed column, by skipping through the index (one probe per
    value, not a scan of the table). Cached for five minutes."""
    values = cache.get(cache_key)
    if values is None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH RECURSIVE seen(value) AS (
                    (SELECT {column} FROM audit_auditentry WHERE {column} IS NOT NULL ORDER BY {column} LIMIT 1)
                    UNION ALL
                    SELECT (SELECT {column} FROM audit_auditentry WHERE {column} > seen.value ORDER BY {column} LIMIT 1)
                    FROM seen WHERE seen.value IS NOT NULL
                )
                SELECT value FROM seen WHERE value IS NOT NULL
                """  # noqa: S608 - column is one of two fixed names
            )
            values = [row[0] for row in cursor.fetchall()]
        cache.set(cache_key, values, 300)
    return values


def known_events() -> list[str]:
    return _loose_scan("event", "audit:events")


def known_target_types() -> list[str]:
    """Target types that occur in the trail, for the filter's choices (types whose model was
    removed are left out: they cannot be chosen by name)."""
    labels = (target_type_label(pk) for pk in _loose_scan("content_type_id", "audit:target_types"))
    return sorted(label for label in labels if not label.startswith("removed-type-"))


def resolve_actor(value: str) -> int | None:
    """A user id from a username or id; None when there is no such user."""
    users = get_user_model()._default_manager
    if value.isdigit():
        return int(value) if users.filter(pk=int(value)).exists() else None
    return users.filter(username__iexact=value).values_list("pk", flat=True).first()


def resolve_target_type(label: str) -> int | None:
    app_label, _, model = label.partition(".")
    if not app_label or not model:
        return None
    try:
        return ContentType.objects.get_by_natural_key(app_label, model.lower()).pk
    except ContentType.DoesNotExist:
        return None


def actor_label(actor_id: int) -> str:
    user = get_user_model()._default_manager.filter(pk=actor_id).first()
    return user.get_username() if user else str(actor_id)
