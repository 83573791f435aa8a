"""Support tickets: the schema, its indexes and small read helpers.

Writes go through :mod:`tickets.services`; shared reads live in :mod:`tickets.queries`.
The full-text search vector and the ticket-number sequence are kept by PostgreSQL itself
(see migrations 0001/0002): the vector by triggers over subject, description and comment
bodies, the number by the sequence ``tickets_ticket_number_seq``.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Case, F, Func, Q, Value, When
from django.db.models.functions import Least
from django.utils import timezone

TICKET_NUMBER_SEQUENCE = "tickets_ticket_number_seq"
SUBJECT_MAX_LENGTH = 200
# Long enough for a pasted log excerpt, short enough to keep rows and emails sane.
BODY_MAX_LENGTH = 20_000
TAG_MAX_LENGTH = 50
MAX_TAGS = 20


class Status(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    PENDING = "pending", "Pending"
    ON_HOLD = "on_hold", "On hold"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


class Channel(models.TextChoices):
    WEB = "web", "Web"
    API = "api", "API"
    EMAIL = "email", "Email"


# Work still to do. The tuple's order matters: partial indexes use exactly this list, and the
# planner proves a query's ``status IN (...)`` implies an index predicate most easily when the
# two lists are written the same way (queries.py always filters with this tuple).
ACTIVE_STATUSES: tuple[str, ...] = (Status.NEW, Status.OPEN, Status.PENDING, Status.ON_HOLD)
DONE_STATUSES: tuple[str, ...] = (Status.RESOLVED, Status.CLOSED)
ACTIVE = Q(status__in=ACTIVE_STATUSES)

PRIORITY_RANK = {Priority.LOW: 1, Priority.NORMAL: 2, Priority.HIGH: 3, Priority.URGENT: 4}


class NextVal(Func):
    """``nextval('<sequence>')`` as a column default."""

    function = "nextval"

    def __init__(self, sequence: str, **extra):
        super().__init__(Value(sequence), output_field=models.BigIntegerField(), **extra)


class AssignmentStrategy(models.TextChoices):
    MANUAL = "manual", "Manual"
    ROUND_ROBIN = "round_robin", "Round robin"
    LEAST_LOAD = "least_load", "Least open load"


class SupportTeam(models.Model):
    """Agents who share a set of categories; automatic assignment picks among them."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="support_teams", blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    """What a ticket is about. Admins add categories; the API names them by slug."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    is_active = models.BooleanField(
        default=True,
        help_text="Inactive categories are kept on old tickets but not offered for new ones.",
    )
    position = models.PositiveSmallIntegerField(
        default=100, help_text="Order in pickers, lowest first."
    )
    created_at = models.DateTimeField(default=timezone.now)
    team = models.ForeignKey(
        SupportTeam,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="categories",
        help_text="Agents who work this category; automatic assignment picks among them.",
    )
    assignment_strategy = models.CharField(
        max_length=20, choices=AssignmentStrategy.choices, default=AssignmentStrategy.MANUAL
    )

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"
        constraints = [
            models.CheckConstraint(
                condition=Q(assignment_strategy__in=AssignmentStrategy.values),
                name="category_assignment_strategy_valid",
            )
        ]

    def __str__(self) -> str:
        return self.name


class TicketQuerySet(models.QuerySet):
    def active(self):
        return self.filter(ACTIVE)

    def visible_to(self, user):
        """Tickets ``user`` may read: all for staff allowed to view tickets, own ones for a
        customer, none for anyone else."""
        if not (user and user.is_authenticated and user.is_active):
            return self.none()
        if user.is_staff:
            return self if user.has_perm("tickets.view_ticket") else self.none()
        return self.filter(requester=user)


BaseTicketManager = models.Manager.from_queryset(TicketQuerySet)


class TicketManager(BaseTicketManager):
    # The search vector can be tens of kilobytes per ticket and is only ever used inside
    # SQL (``@@``); never fetch it into Python.
    def get_queryset(self):
        return super().get_queryset().defer("search_vector")


class Ticket(models.Model):
    ticket_number = models.BigIntegerField(
        unique=True,
        editable=False,
        db_default=NextVal(TICKET_NUMBER_SEQUENCE),
        help_text="Human-friendly number, shown as #1042.",
    )
    subject = models.CharField(max_length=SUBJECT_MAX_LENGTH)
    description = models.TextField(max_length=BODY_MAX_LENGTH)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="tickets")
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    priority_rank = models.GeneratedField(
        expression=Case(
            *(When(priority=value, then=Value(rank)) for value, rank in PRIORITY_RANK.items()),
            default=Value(0),
        ),
        output_field=models.SmallIntegerField(),
        db_persist=True,
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    channel = models.CharField(max_length=10, choices=Channel.choices, default=Channel.WEB)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="requested_tickets"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_tickets",
    )
    tags = ArrayField(models.CharField(max_length=TAG_MAX_LENGTH), default=list, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    first_responded_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="merged_tickets"
    )

    # SLA state, computed and stored by the SLA engine so lists can sort and filter by it.
    first_response_due_at = models.DateTimeField(null=True, blank=True)
    resolution_due_at = models.DateTimeField(null=True, blank=True)
    sla_paused_at = models.DateTimeField(null=True, blank=True)
    sla_first_response_warning = models.BooleanField(default=False)
    sla_resolution_warning = models.BooleanField(default=False)
    sla_breached = models.BooleanField(default=False)
    # Per target, so a second deadline passing after the first is still noticed by the scan;
    # ``sla_breached`` is their OR (kept by tickets.sla).
    sla_first_response_breached = models.BooleanField(default=False, db_default=False)
    sla_resolution_breached = models.BooleanField(default=False, db_default=False)
    # When 80% of each target's business time has passed (the scan's warning threshold).
    first_response_warn_at = models.DateTimeField(null=True, blank=True)
    resolution_warn_at = models.DateTimeField(null=True, blank=True)
    # Business seconds the clock stood still while the ticket was pending or on hold.
    sla_paused_seconds = models.BigIntegerField(default=0, db_default=0)
    sla_policy = models.ForeignKey(
        "SLAPolicy", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Automatic assignment: whether the current assignee was picked by the router (manual
    # assignments are never undone by it), and whether it found nobody eligible.
    auto_assigned = models.BooleanField(default=False, db_default=False)
    needs_assignment = models.BooleanField(default=False, db_default=False)
    # The earliest deadline still running: the first-response due time until someone
    # answered, then the resolution due time. "Next due" sorting walks an index on it.
    next_due_at = models.GeneratedField(
        expression=Case(
            When(
                first_responded_at__isnull=True,
                then=Least(F("first_response_due_at"), F("resolution_due_at")),
            ),
            default=F("resolution_due_at"),
        ),
        output_field=models.DateTimeField(),
        db_persist=True,
    )

    search_vector = SearchVectorField(null=True, editable=False)

    objects = TicketManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("reopen_closed_ticket", "Can reopen a closed ticket")]
        indexes = [
            # The queue's default view: active tickets, most urgent first, oldest first.
            models.Index(
                F("priority_rank").desc(),
                "created_at",
                "id",
                name="ticket_active_priority",
                condition=ACTIVE,
            ),
            models.Index(
                "assignee",
                F("priority_rank").desc(),
                "created_at",
                "id",
                name="ticket_active_assignee",
                condition=ACTIVE,
            ),
            models.Index("next_due_at", "id", name="ticket_active_next_due", condition=ACTIVE),
            models.Index(
                F("updated_at").desc(),
                F("id").desc(),
                name="ticket_active_updated",
                condition=ACTIVE,
            ),
            models.Index(
                "id", name="ticket_active_breached", condition=ACTIVE & Q(sla_breached=True)
            ),
            # The SLA scan (tickets.sla.scan): each of its four marks reads only the running
            # clocks not yet marked, in due order.
            models.Index(
                "first_response_due_at",
                name="ticket_sla_fr_due",
                condition=ACTIVE
                & Q(first_responded_at__isnull=True, sla_first_response_breached=False),
            ),
            models.Index(
                "resolution_due_at",
                name="ticket_sla_res_due",
                condition=ACTIVE & Q(sla_resolution_breached=False),
            ),
            models.Index(
                "first_response_warn_at",
                name="ticket_sla_fr_warn",
                condition=ACTIVE
                & Q(first_responded_at__isnull=True, sla_first_response_warning=False),
            ),
            models.Index(
                "resolution_warn_at",
                name="ticket_sla_res_warn",
                condition=ACTIVE & Q(sla_resolution_warning=False),
            ),
            models.Index(
                "id", name="ticket_needs_assignment", condition=ACTIVE & Q(needs_assignment=True)
            ),
            # Whole-table orderings (API default, created-range filters, archive views).
            models.Index(F("created_at").desc(), F("id").desc(), name="ticket_created"),
            models.Index(F("updated_at").desc(), F("id").desc(), name="ticket_updated"),
            models.Index(F("priority_rank").desc(), "created_at", "id", name="ticket_priority"),
            models.Index("requester", F("created_at").desc(), name="ticket_requester_created"),
            models.Index("category", "status", name="ticket_category_status"),
            GinIndex(fields=["tags"], name="ticket_tags"),
            GinIndex(fields=["search_vector"], name="ticket_search"),
            # Searching the working set (the queue's default scope) reads only active tickets.
            GinIndex(fields=["search_vector"], name="ticket_active_search", condition=ACTIVE),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=Status.values), name="ticket_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(priority__in=Priority.values), name="ticket_priority_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="ticket_channel_valid"
            ),
            models.CheckConstraint(
                condition=~Q(merged_into=F("id")), name="ticket_not_merged_into_self"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.ticket_number} {self.subject}"

    @property
    def number_display(self) -> str:
        return f"#{self.ticket_number}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class TicketCount(models.Model):
    """How many tickets have each combination of the queue's facets — status, priority,
    category, assignee (0 for none) and SLA breach — so the statistics cards and the page
    count of any facet filter are a sum over a few thousand rows instead of a count over a
    million tickets.

    Kept by PostgreSQL triggers on tickets_ticket (migration 0003), in the same transaction as
    the change, so counts are exact for every reader. Writers only append delta rows (+n/-n),
    so concurrent changes never wait on one another's counter rows; ``compact_ticket_counts``
    (a Celery beat task every minute) folds the deltas into one row per combination.
    """

    status = models.CharField(max_length=10)
    priority = models.CharField(max_length=10)
    category = models.ForeignKey(
        Category, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    assignee_key = models.BigIntegerField(help_text="The assignee's user id, 0 when unassigned.")
    sla_breached = models.BooleanField()
    n = models.BigIntegerField()

    class Meta:
        indexes = [
            models.Index(
                "status",
                "priority",
                "category",
                "assignee_key",
                "sla_breached",
                name="ticket_count_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.status}/{self.priority}/{self.category_id}/{self.assignee_key}/{self.sla_breached}: {self.n}"


class Comment(models.Model):
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ticket_comments"
    )
    body = models.TextField(max_length=BODY_MAX_LENGTH)
    is_internal = models.BooleanField(
        default=False, help_text="Internal notes are seen by staff only."
    )
    # No reverse accessor: queries.comments_for builds a thread in one query and sets
    # ``replies`` on each comment itself.
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Set when a merge moved this comment here from a duplicate ticket.
    merged_from = models.ForeignKey(
        Ticket, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    # Not stored: queries.comments_for sets both on every comment it returns.
    replies: list[Comment]
    depth: int

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index("ticket", "created_at", "id", name="comment_ticket_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=~Q(parent=F("id")), name="comment_not_own_parent"),
        ]

    def __str__(self) -> str:
        kind = "Internal note" if self.is_internal else "Comment"
        return f"{kind} {self.pk} on ticket {self.ticket_id}"


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    STATUS = "status", "Status changed"
    PRIORITY = "priority", "Priority changed"
    ASSIGNEE = "assignee", "Assignee changed"
    CATEGORY = "category", "Category changed"
    SUBJECT = "subject", "Subject changed"
    TAGS = "tags", "Tags changed"
    MERGED_INTO = "merged_into", "Merged into another ticket"
    MERGED_FROM = "merged_from", "Another ticket merged in"


class TicketEvent(models.Model):
    """One line of a ticket's timeline. Values are stored as the text shown at the time
    (a username, a category name), so the timeline reads the same after renames."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=EventKind.choices)
    from_value = models.CharField(max_length=300, blank=True)
    to_value = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index("ticket", "created_at", "id", name="event_ticket_created")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on ticket {self.ticket_id}"


class CannedReply(models.Model):
    """A staff-managed snippet agents insert into the comment form."""

    title = models.CharField(max_length=100, unique=True)
    body = models.TextField(max_length=BODY_MAX_LENGTH)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["title"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return self.title


class SavedView(models.Model):
    """A named queue filter a user keeps; ``query_string`` is the queue URL's query."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_ticket_views"
    )
    name = models.CharField(max_length=60)
    query_string = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint("user", "name", name="saved_view_unique_name")]

    def __str__(self) -> str:
        return self.name


class EmailNotification(models.Model):
    """One email sent about a ticket. The unique ``key`` makes each send idempotent: a task
    retried after a crash finds its key and does not mail twice."""

    key = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20)
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="notifications")
    recipient = models.EmailField()
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return f"{self.kind} to {self.recipient}"


# --- SLA policies, calendars and clocks -------------------------------------------------------


class CustomerTier(models.TextChoices):
    STANDARD = "standard", "Standard"
    BUSINESS = "business", "Business"
    ENTERPRISE = "enterprise", "Enterprise"


class CustomerProfile(models.Model):
    """Support settings of a customer: the support plan's tier, which SLA policies may match."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="support_profile"
    )
    tier = models.CharField(
        max_length=20, choices=CustomerTier.choices, default=CustomerTier.STANDARD
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(tier__in=CustomerTier.values), name="customer_profile_tier_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_tier_display()} plan of user {self.user_id}"


class BusinessCalendar(models.Model):
    """When SLA clocks run: weekly hours in a time zone, minus public holidays of a country
    (the ``holidays`` package) and custom dates; or around the clock.

    ``weekly_hours`` holds seven lists, Monday first, of ``[start_minute, end_minute]`` pairs
    in local time (``[[540, 1020]]`` is 09:00–17:00); tickets.sla reads it."""

    name = models.CharField(max_length=100, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    always_open = models.BooleanField(
        default=False, help_text="Around the clock: weekly hours and holidays are ignored."
    )
    weekly_hours = models.JSONField(default=list, blank=True)
    holiday_country = models.CharField(
        max_length=3, blank=True, help_text="ISO 3166 country code whose public holidays close."
    )
    holiday_subdivision = models.CharField(max_length=10, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CalendarHoliday(models.Model):
    """A custom closed day of a calendar (company events, local days the package lacks)."""

    calendar = models.ForeignKey(
        BusinessCalendar, on_delete=models.CASCADE, related_name="custom_holidays"
    )
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint("calendar", "date", name="calendar_holiday_unique_date")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.name}".strip()


class SLAPolicy(models.Model):
    """Targets for tickets of one priority, optionally narrowed to a category and a customer
    tier. Policies are tried in ``position`` order; the first that matches applies."""

    name = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=100, help_text="Tried lowest first.")
    priority = models.CharField(max_length=10, choices=Priority.choices)
    category = models.ForeignKey(
        Category,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="sla_policies",
        help_text="Empty: any category.",
    )
    customer_tier = models.CharField(
        max_length=20, choices=CustomerTier.choices, blank=True, help_text="Empty: any tier."
    )
    first_response_minutes = models.PositiveIntegerField()
    resolution_minutes = models.PositiveIntegerField()
    calendar = models.ForeignKey(
        BusinessCalendar,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="policies",
        help_text="Empty: the clock runs around the clock.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(priority__in=Priority.values), name="sla_policy_priority_valid"
            ),
            models.CheckConstraint(
                condition=Q(first_response_minutes__gt=0, resolution_minutes__gt=0),
                name="sla_policy_targets_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class TargetKind(models.TextChoices):
    FIRST_RESPONSE = "first_response", "First response"
    RESOLUTION = "resolution", "Resolution"


class TargetOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    MET = "met", "Met"
    BREACHED = "breached", "Breached"
    CANCELLED = "cancelled", "Cancelled"


class SLATarget(models.Model):
    """One SLA clock of a ticket and, once it stops, its result: the ticket's SLA history.

    A ticket has one first-response target and one resolution target per cycle (reopening
    starts a new cycle). Due and warning times are in business time of the policy's
    calendar, with the business time the ticket spent paused added back. ``margin_seconds``
    is how much business time was left (positive) or overrun (negative) when it stopped."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="sla_targets")
    kind = models.CharField(max_length=20, choices=TargetKind.choices)
    cycle = models.PositiveSmallIntegerField(default=1)
    policy = models.ForeignKey(
        SLAPolicy, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    policy_name = models.CharField(max_length=100, blank=True)
    # What the report groups by, as they were when the clock stopped.
    priority = models.CharField(max_length=10, choices=Priority.choices)
    category = models.ForeignKey(
        Category, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    target_seconds = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    due_at = models.DateTimeField()
    warn_at = models.DateTimeField()
    paused_seconds = models.BigIntegerField(default=0)
    warned_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=10, choices=TargetOutcome.choices, default=TargetOutcome.RUNNING
    )
    margin_seconds = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        verbose_name = "SLA target"
        indexes = [
            models.Index("ticket", "kind", name="sla_target_ticket"),
            models.Index(
                "completed_at",
                name="sla_target_completed",
                condition=Q(outcome__in=("met", "breached")),
            ),
        ]
        constraints = [
            models.UniqueConstraint("ticket", "kind", "cycle", name="sla_target_unique_cycle"),
            models.CheckConstraint(
                condition=Q(outcome__in=TargetOutcome.values), name="sla_target_outcome_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of ticket {self.ticket_id} ({self.outcome})"


class AlertKind(models.TextChoices):
    WARNING = "warning", "Warning"
    BREACH = "breach", "Breach"


class SLAAlert(models.Model):
    """A warning or a breach of one SLA target, to be announced once. The scan creates it
    (unique per target and kind, so a second scan adds nothing); it is sent from
    ``notify_after`` on, the next business moment unless the ticket is urgent."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="sla_alerts")
    target = models.ForeignKey(SLATarget, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=10, choices=AlertKind.choices)
    created_at = models.DateTimeField(default=timezone.now)
    notify_after = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                "notify_after", "id", name="sla_alert_unsent", condition=Q(sent_at__isnull=True)
            )
        ]
        constraints = [models.UniqueConstraint("target", "kind", name="sla_alert_once_per_target")]

    def __str__(self) -> str:
        return f"SLA {self.kind} of ticket {self.ticket_id}"


class SupportNotification(models.Model):
    """An in-console notification for a staff member (SLA warnings and breaches)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="support_notifications"
    )
    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="+")
    alert = models.ForeignKey(SLAAlert, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=10, choices=AlertKind.choices)
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(F("user"), F("created_at").desc(), name="notification_user_created"),
            models.Index(
                "user", name="notification_user_unread", condition=Q(read_at__isnull=True)
            ),
        ]
        constraints = [models.UniqueConstraint("alert", "user", name="notification_once_per_alert")]

    def __str__(self) -> str:
        return self.message


class AgentProfile(models.Model):
    """An agent's availability and cap for automatic assignment."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile"
    )
    is_available = models.BooleanField(default=True)
    max_open_tickets = models.PositiveIntegerField(
        default=25, help_text="Automatic assignment skips the agent at this many active tickets."
    )
    # Round robin hands the next ticket to whoever waited longest.
    last_assigned_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Agent profile of user {self.user_id}"
