"""The record of every impersonation: one ``ImpersonationSession`` per "sign in as", and the
pages its staff member opened while acting as the customer.

Rows are written by :mod:`impersonation.services` only. A session is active while
``ended_at`` is NULL; it then carries how it ended. The pages visited live in their own narrow
table (one INSERT per request, read back in time order by one index), capped per session by
``MAX_PAGE_VIEWS`` so that a script looping inside an impersonated session cannot grow it
without bound; ``page_count`` still counts every request.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

MAX_PAGE_VIEWS = 1000
MAX_REASON_LENGTH = 500
MAX_PATH_LENGTH = 2000


class EndReason(models.TextChoices):
    STOPPED = "stopped", "Stopped"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    FORCED = "forced", "Forced to end"


class ImpersonationSessionQuerySet(models.QuerySet):
    def active(self):
        return self.filter(ended_at__isnull=True)

    def ended(self):
        return self.filter(ended_at__isnull=False)


class ImpersonationSession(models.Model):
    impersonator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="impersonations_made",
        help_text="The staff member who acted as the customer.",
    )
    # PROTECT: this is the record that someone entered the account; deleting the account must
    # deal with it first (the audit trail keeps the names either way).
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="impersonation_sessions",
        help_text="The account that was impersonated.",
    )
    reason = models.TextField(max_length=MAX_REASON_LENGTH)
    ticket = models.ForeignKey(
        "tickets.Ticket",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="impersonation_sessions",
    )
    started_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=10, choices=EndReason.choices, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who ended it: the staff member, an admin forcing it, or nobody (the system).",
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    page_count = models.PositiveIntegerField(default=0)
    customer_notified_at = models.DateTimeField(null=True, blank=True)

    objects = ImpersonationSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-id"]
        # No add/change/delete: sessions are made and ended by the services, never edited.
        default_permissions = ("view",)
        permissions = [
            ("impersonate", "Can impersonate customers"),
            ("force_end", "Can force another staff member's impersonation to end"),
        ]
        constraints = [
            # One running impersonation per staff member, across all their browsers: starting a
            # second one while the first is live is "impersonating while impersonating".
            models.UniqueConstraint(
                fields=["impersonator"],
                condition=Q(ended_at__isnull=True),
                name="impersonation_one_active_per_staff",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end_reason="")
                | (Q(ended_at__isnull=False) & ~Q(end_reason="")),
                name="impersonation_ended_with_reason",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("started_at")),
                name="impersonation_expires_after_start",
            ),
        ]
        indexes = [
            models.Index(fields=["started_at", "id"], name="impersonation_started_idx"),
            models.Index(fields=["customer", "started_at"], name="impersonation_customer_idx"),
            models.Index(
                fields=["impersonator", "started_at"], name="impersonation_impersonator_idx"
            ),
            # The dashboard panel, the console's "active now" and the expiry sweep.
            models.Index(
                fields=["expires_at"],
                condition=Q(ended_at__isnull=True),
                name="impersonation_active_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Impersonation #{self.pk} of {self.customer} by {self.impersonator}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None

    @property
    def duration(self) -> timedelta:
        return (self.ended_at or timezone.now()) - self.started_at

    @property
    def duration_label(self) -> str:
        seconds = int(self.duration.total_seconds())
        if seconds < 60:
            return f"{seconds} s"
        minutes = seconds // 60
        return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"

    @property
    def seconds_left(self) -> int:
        if self.ended_at is not None:
            return 0
        return max(0, int((self.expires_at - timezone.now()).total_seconds()))

    @property
    def minutes_left(self) -> int:
        """Whole minutes left, rounded up: "1 min left" until the very end."""
        return -(-self.seconds_left // 60)

    @property
    def limit_minutes(self) -> int:
        return round((self.expires_at - self.started_at).total_seconds() / 60)


class ImpersonationPageView(models.Model):
    """One request made while impersonating (also the refused ones, with their 403)."""

    # db_index=False: the composite index below leads with the session.
    session = models.ForeignKey(
        ImpersonationSession, on_delete=models.CASCADE, related_name="page_views", db_index=False
    )
    at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=MAX_PATH_LENGTH)
    status_code = models.PositiveSmallIntegerField()
    blocked = models.BooleanField(default=False)

    class Meta:
        ordering = ["at", "id"]
        default_permissions = ("view",)
        indexes = [models.Index(fields=["session", "at", "id"], name="impersonation_pages_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.status_code})"
