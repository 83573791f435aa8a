"""Metric storage. Raw points live in a table range-partitioned by day (created in SQL by the
migrations and kept by monitoring/storage.py); every chart reads the per-minute rollups."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Metric(models.Model):
    """One raw point of the partitioned table ``monitoring_points`` (read-only through the ORM).

    Not managed by Django: the table is ``PARTITION BY RANGE (time)``, written with binary COPY
    only, and has no primary key (a unique index would have to include ``time`` and would slow
    COPY; duplicates are prevented at the flush instead). ``time`` is declared the primary key
    here only because the ORM needs one. The model also carries the monitoring permissions:
    ``view_metric`` (dashboard, /metrics) and ``add_metric`` (ingestion API).
    """

    time = models.DateTimeField(primary_key=True)
    name = models.TextField()
    value = models.FloatField()
    tags = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "monitoring_points"

    def __str__(self) -> str:
        return f"{self.name}={self.value} at {self.time:%Y-%m-%d %H:%M:%S}"


class MetricRollup(models.Model):
    """Count, sum, min, max, last and an approximate p95 of one metric and tag set in one minute.

    ``hist`` is a sparse log-bucket histogram (bucket index -> count, 10 % wide buckets), so that
    minutes merge exactly across flushes and ``p95`` stays within about 5 % of the true value.
    """

    name = models.TextField()
    tags_key = models.TextField(default="", blank=True)  # canonical JSON of the tags, '' for none
    tags = models.JSONField(null=True, blank=True)
    minute = models.DateTimeField()
    count = models.BigIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    last = models.FloatField()
    last_at = models.DateTimeField()
    p95 = models.FloatField()
    hist = models.JSONField(default=dict)

    class Meta:
        db_table = "monitoring_rollups"
        constraints = [
            models.UniqueConstraint(
                fields=["name", "tags_key", "minute"], name="monitoring_rollup_key"
            )
        ]
        # Charts read these columns only: an index-only scan skips the wide histogram rows.
        indexes = [
            models.Index(
                fields=["name", "minute"],
                name="monitoring_rollup_chart",
                include=["count", "sum", "min", "max", "p95"],
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.tags_key} {self.minute:%Y-%m-%d %H:%M}"


class FlushCursor(models.Model):
    """How far the flush got in one Redis stream: the id of the last entry committed. Updated in
    the transaction that writes the points, so a flush that dies after its commit and before
    trimming the stream is never written again."""

    stream = models.TextField(primary_key=True)
    last_id = models.TextField(default="")

    class Meta:
        db_table = "monitoring_flush_cursor"

    def __str__(self) -> str:
        return f"{self.stream} at {self.last_id or 'start'}"


# --- alerting ------------------------------------------------------------------------------


class Operator(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", "≥"
    LT = "lt", "<"
    LTE = "lte", "≤"
    EQ = "eq", "="


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


SEVERITY_RANK: dict[str, int] = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Aggregation(models.TextChoices):
    LAST = "last", "last value"
    AVG = "avg", "average"
    MIN = "min", "minimum"
    MAX = "max", "maximum"
    SUM = "sum", "sum"
    COUNT = "count", "count of points"
    P95 = "p95", "95th percentile"


class NoData(models.TextChoices):
    OK = "ok", "Treat as OK (resolve)"
    ALERTING = "alerting", "Treat as breaching"
    KEEP = "keep", "Keep the last state"


def _choices_check(field: str, choices: type[models.TextChoices], name: str):
    return models.CheckConstraint(condition=models.Q(**{f"{field}__in": choices.values}), name=name)


class AlertRule(models.Model):
    """A threshold on a metric, evaluated every 10 s (monitoring/alerts.py).

    Ops insert rules from SQL as the runbook does (DESIGN.md), naming only ``name, metric,
    operator, threshold, severity, notification_channels, enabled``: every other column has a
    database default (``db_default``), and check constraints refuse a misspelt vocabulary
    there too, since such a row never passes through the services' validation.
    """

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, db_default="")
    metric = models.CharField(max_length=100)
    operator = models.CharField(max_length=3, choices=Operator.choices)
    threshold = models.FloatField()
    severity = models.CharField(max_length=10, choices=Severity.choices)
    notification_channels = models.JSONField(db_default=models.Value({}, models.JSONField()))
    enabled = models.BooleanField(db_default=True)
    aggregation = models.CharField(
        max_length=5, choices=Aggregation.choices, db_default=Aggregation.LAST
    )
    window_seconds = models.PositiveIntegerField(db_default=60)
    pending_seconds = models.PositiveIntegerField(db_default=0)
    tag_filter = models.JSONField(db_default=models.Value({}, models.JSONField()))
    no_data = models.CharField(max_length=8, choices=NoData.choices, db_default=NoData.OK)
    renotify_seconds = models.PositiveIntegerField(db_default=0)  # 0: never re-notify
    auto_resolve = models.BooleanField(db_default=True)
    recovery_threshold = models.FloatField(null=True, blank=True)
    critical_threshold = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_error = models.TextField(blank=True, db_default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "alert_rules"
        ordering = ["name", "id"]
        constraints = [
            _choices_check("operator", Operator, "alert_rule_operator_valid"),
            _choices_check("severity", Severity, "alert_rule_severity_valid"),
            _choices_check("aggregation", Aggregation, "alert_rule_aggregation_valid"),
            _choices_check("no_data", NoData, "alert_rule_no_data_valid"),
            models.CheckConstraint(
                condition=models.Q(window_seconds__gte=1), name="alert_rule_window_positive"
            ),
        ]
        indexes = [models.Index(fields=["metric"], name="alert_rule_metric")]

    def __str__(self) -> str:
        return self.name

    @property
    def condition(self) -> str:
        return (
            f"{self.aggregation}({self.metric}) {Operator(self.operator).label} {self.threshold:g}"
        )


class AlertStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


OPEN_STATUSES = (AlertStatus.PENDING, AlertStatus.FIRING)


class Alert(models.Model):
    """One occurrence of a rule's condition for one tag set, from pending to resolved.

    At most one open (pending or firing) alert per rule and tag set: a partial unique index,
    so two evaluators racing on the same breach insert one row between them. The rule's name,
    metric and condition are copied in so the history survives the rule's deletion.
    """

    rule = models.ForeignKey(
        AlertRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="alerts"
    )
    rule_name = models.CharField(max_length=200)
    metric = models.CharField(max_length=100)
    condition = models.CharField(max_length=300)
    tags_key = models.TextField(default="", blank=True)
    tags = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=AlertStatus.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    value = models.FloatField(null=True, blank=True)  # None: fired for lack of data
    threshold = models.FloatField()
    started_at = models.DateTimeField()
    fired_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution_note = models.TextField(blank=True, default="")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    acknowledgement_note = models.TextField(blank=True, default="")
    last_notified_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField()

    class Meta:
        db_table = "monitoring_alerts"
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "tags_key"],
                condition=models.Q(status__in=["pending", "firing"]),
                name="monitoring_alert_one_open",
            ),
            _choices_check("status", AlertStatus, "monitoring_alert_status_valid"),
        ]
        indexes = [
            models.Index(
                fields=["status", "severity"],
                name="monitoring_alert_open",
                condition=models.Q(status__in=["pending", "firing"]),
            ),
            models.Index(fields=["rule", "-started_at"], name="monitoring_alert_rule"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_name} {self.tags_key} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class AlertEvent(models.Model):
    """One transition or action in an alert's life: its history."""

    class Kind(models.TextChoices):
        PENDING = "pending", "Pending"
        FIRING = "firing", "Firing"
        ESCALATED = "escalated", "Escalated"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        CLEARED = "cleared", "Cleared before firing"
        RENOTIFIED = "renotified", "Re-notified"
        SILENCED = "silenced", "Notification silenced"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    at = models.DateTimeField()
    actor = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    value = models.FloatField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        db_table = "monitoring_alert_events"
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["alert", "at"], name="monitoring_alert_event")]

    def __str__(self) -> str:
        return f"{self.kind} at {self.at:%Y-%m-%d %H:%M:%S}"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"
    WEBHOOK = "webhook", "Webhook"


class Notification(models.Model):
    """One message to one destination about one alert event, delivered by its own task."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    class Event(models.TextChoices):
        FIRING = "firing", "Firing"
        ESCALATED = "escalated", "Escalated"
        RENOTIFY = "renotify", "Still firing"
        RESOLVED = "resolved", "Resolved"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=10, choices=Event.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    target = models.CharField(max_length=2000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "monitoring_notifications"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} to {self.target} ({self.status})"


class DeliveryAttempt(models.Model):
    """One try at delivering a notification, with its outcome."""

    class Outcome(models.TextChoices):
        SENT = "sent", "Sent"
        RETRY = "retry", "Failed, will retry"
        FAILED = "failed", "Failed, not retried"

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "monitoring_delivery_attempts"
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.outcome}"


class Silence(models.Model):
    """Mute one rule, or every rule of a metric, from ``starts_at`` to ``ends_at``: alerts
    still change state, but nothing is sent."""

    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, null=True, blank=True, related_name="silences"
    )
    metric = models.CharField(max_length=100, blank=True, default="")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.TextField()
    created_by = models.ForeignKey(
        "auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        db_table = "monitoring_silences"
        ordering = ["-starts_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(rule__isnull=False, metric="")
                    | models.Q(rule__isnull=True) & ~models.Q(metric="")
                ),
                name="monitoring_silence_one_target",
            ),
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="monitoring_silence_window",
            ),
        ]

    def __str__(self) -> str:
        target = self.rule.name if self.rule is not None else f"metric {self.metric}"
        return f"silence of {target}"
