"""Reads shared by the middleware, the console pages and the dashboard panel.

Each runs a fixed number of queries whatever the number of sessions, pages or audit entries
(asserted in tests/impersonation/test_views.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Page, Paginator
from django.db.models import DateTimeField, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AuditEntry
from impersonation.models import (
    ImpersonationPageView,
    ImpersonationSession,
    ImpersonationSessionQuerySet,
)
from tickets.models import Ticket

User = get_user_model()

PAGE_SIZE = 50
ACTIVE_SHOWN = 50
PAGES_SHOWN = 1000
TRAIL_SHOWN = 500

# What pages and the policy need of a user; never the password hash.
_USER_FIELDS = (
    "id",
    "username",
    "first_name",
    "last_name",
    "email",
    "is_staff",
    "is_superuser",
    "is_active",
)
_SESSION_RELATED = [
    *(f"impersonator__{name}" for name in _USER_FIELDS),
    *(f"customer__{name}" for name in _USER_FIELDS),
    "ticket__id",
    "ticket__ticket_number",
    "ticket__subject",
    "ticket__requester_id",
]
_SESSION_FIELDS = [
    "id", "impersonator_id", "customer_id", "reason", "ticket_id", "started_at", "expires_at",
    "ended_at", "end_reason", "ended_by_id", "ip_address", "user_agent", "page_count",
    "customer_notified_at", *_SESSION_RELATED,
]  # fmt: skip


def _sessions() -> ImpersonationSessionQuerySet:
    return ImpersonationSession.objects.select_related("impersonator", "customer", "ticket").only(
        *_SESSION_FIELDS
    )


def session_for_request(session_id: int | None) -> ImpersonationSession | None:
    """The session a browser is impersonating under, with both users. One query."""
    if session_id is None:
        return None
    return _sessions().filter(pk=session_id).first()


def session_detail(session_id: int) -> ImpersonationSession | None:
    """A session with both users, its ticket and who ended it. One query."""
    return (
        _sessions()
        .select_related("ended_by")
        .only(*_SESSION_FIELDS, *(f"ended_by__{name}" for name in _USER_FIELDS))
        .filter(pk=session_id)
        .first()
    )


def active_sessions(limit: int = ACTIVE_SHOWN) -> list[ImpersonationSession]:
    """Running sessions, the ones ending soonest first. One query."""
    return list(_sessions().active().order_by("expires_at", "id")[:limit])


def active_count() -> int:
    return ImpersonationSession.objects.active().count()


def page_views(
    session: ImpersonationSession, limit: int = PAGES_SHOWN
) -> list[ImpersonationPageView]:
    return list(ImpersonationPageView.objects.filter(session=session).order_by("at", "id")[:limit])


def trail(session: ImpersonationSession, limit: int = TRAIL_SHOWN) -> list[AuditEntry]:
    """The audit entries naming this session: its own events (started, ended, blocked
    actions, notices), and everything written while its staff member was acting as someone
    in its time window. Oldest first. One query (the target index and the partial index of
    impersonated entries)."""
    content_type = ContentType.objects.get_for_model(ImpersonationSession)
    window = Q(impersonator_id=session.impersonator_id, timestamp__gte=session.started_at)
    if session.ended_at is not None:
        # Entries of the request that ended it are written a moment after ended_at, but never
        # into the staff member's next session.
        until = session.ended_at + timedelta(seconds=5)
        next_start = (
            ImpersonationSession.objects.filter(
                impersonator_id=session.impersonator_id, started_at__gt=session.started_at
            )
            .order_by("started_at")
            .values("started_at")[:1]
        )
        window &= Q(timestamp__lte=until) & Q(
            timestamp__lt=Coalesce(Subquery(next_start), Value(until, output_field=DateTimeField()))
        )
    return list(
        AuditEntry.objects.filter(Q(content_type=content_type, object_pk=str(session.pk)) | window)
        .only(
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
            "additional_data",
        )  # fmt: skip
        .order_by("timestamp", "id")[:limit]
    )


# --- the console list --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionFilters:
    status: str = ""  # "", "active" or "ended"
    end_reason: str = ""
    impersonator_id: int | None = None
    customer_id: int | None = None
    since: date | None = None
    until: date | None = None
    search: str = ""

    def apply(self, queryset: QuerySet) -> QuerySet:
        if self.status == "active":
            queryset = queryset.filter(ended_at__isnull=True)
        elif self.status == "ended":
            queryset = queryset.filter(ended_at__isnull=False)
        if self.end_reason:
            queryset = queryset.filter(end_reason=self.end_reason)
        if self.impersonator_id is not None:
            queryset = queryset.filter(impersonator_id=self.impersonator_id)
        if self.customer_id is not None:
            queryset = queryset.filter(customer_id=self.customer_id)
        if self.since is not None:
            queryset = queryset.filter(started_at__gte=_day_start(self.since))
        if self.until is not None:
            queryset = queryset.filter(started_at__lt=_day_start(self.until + timedelta(days=1)))
        if self.search:
            queryset = queryset.filter(reason__icontains=self.search)
        return queryset


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


def session_page(filters: SessionFilters, page_number) -> Page:
    """One page of sessions, newest first. Two queries (count and rows)."""
    queryset = filters.apply(_sessions()).order_by("-started_at", "-id")
    return Paginator(queryset, PAGE_SIZE).get_page(page_number)


# --- looking people and tickets up -----------------------------------------------------------


class NotFoundError(ValueError):
    """A user or ticket named in a form cannot be found; the message says what to give."""


def find_user(value: str):
    """A user from a user id, a username or an email address (case-insensitive)."""
    value = value.strip()
    if not value:
        raise NotFoundError("Give the customer's username, email address or user id.")
    users = User._default_manager
    if value.isdigit():
        found = users.filter(pk=int(value)).first() or users.filter(username=value).first()
    elif "@" in value:
        matches = list(users.filter(Q(email__iexact=value) | Q(username__iexact=value))[:2])
        if len(matches) > 1:
            raise NotFoundError(
                f"Several accounts use {value!r}; give the customer's username instead."
            )
        found = matches[0] if matches else None
    else:
        found = users.filter(username__iexact=value).first()
    if found is None:
        raise NotFoundError(
            f"There is no user {value!r}. Give a username, an email address or a user id."
        )
    return found


def find_ticket(value: str) -> Ticket | None:
    """A ticket from its id, or ``#number`` as shown on ticket pages; None for an empty value."""
    value = value.strip()
    if not value:
        return None
    tickets = Ticket.objects.only("id", "ticket_number", "subject", "requester_id")
    if value.startswith("#") and value[1:].isdigit():
        found = tickets.filter(ticket_number=int(value[1:])).first()
    elif value.isdigit():
        found = tickets.filter(pk=int(value)).first()
    else:
        raise NotFoundError(f"{value!r} is not a ticket: give its number, such as #1042.")
    if found is None:
        raise NotFoundError(f"There is no ticket {value}.")
    return found


def user_id_for(value: str) -> int | None:
    """A user id from a username or email, for filters (None: nobody by that name)."""
    try:
        return find_user(value).pk
    except NotFoundError:
        return None


PANEL_SHOWN = 5


def panel_context() -> dict:
    """The dashboard's Impersonation panel: how many sessions are running, and the first few
    (ending soonest first). Two queries."""
    return {"active_count": active_count(), "active": active_sessions(PANEL_SHOWN)}
