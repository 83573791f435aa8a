"""Every write of alerting: rules, the alert lifecycle, notifications and their delivery,
silences. Evaluation (monitoring/alerts.py) decides what happens; the transitions it asks for
are written here, each one conditional on the state it starts from, so that two evaluators
racing on the same alert make one transition between them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.services import record
from monitoring import notifications
from monitoring.metrics import MAX_TAGS, NAME_RE, TAG_KEY_RE
from monitoring.models import (
    OPEN_STATUSES,
    Aggregation,
    Alert,
    AlertEvent,
    AlertRule,
    AlertStatus,
    Channel,
    DeliveryAttempt,
    NoData,
    Notification,
    Operator,
    Severity,
    Silence,
)

MAX_TARGETS_PER_CHANNEL = 20
MAX_NOTE = 2000
MAX_WINDOW_SECONDS = 7 * 86400
MAX_PENDING_SECONDS = 86400
MIN_RENOTIFY_SECONDS = 60


class AlertStateError(Exception):
    """The alert is not in a state that allows the action (resolving a resolved alert)."""


# --- rule validation ---------------------------------------------------------------------

RULE_FIELDS = (
    "name",
    "description",
    "metric",
    "operator",
    "threshold",
    "severity",
    "critical_threshold",
    "recovery_threshold",
    "aggregation",
    "window_seconds",
    "pending_seconds",
    "tag_filter",
    "no_data",
    "renotify_seconds",
    "auto_resolve",
    "enabled",
    "notification_channels",
)
REQUIRED_RULE_FIELDS = ("name", "metric", "operator", "threshold", "severity")
RULE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "critical_threshold": None,
    "recovery_threshold": None,
    "aggregation": Aggregation.LAST,
    "window_seconds": 60,
    "pending_seconds": 0,
    "tag_filter": {},
    "no_data": NoData.OK,
    "renotify_seconds": 0,
    "auto_resolve": True,
    "enabled": True,
    "notification_channels": {},
}
TRUE_WORDS = {"true", "on", "1", "yes"}
FALSE_WORDS = {"false", "off", "0", "no", ""}
_url = URLValidator(schemes=["http", "https"])


def rule_values(rule: AlertRule) -> dict[str, Any]:
    return {field: getattr(rule, field) for field in RULE_FIELDS}


def _number(value, *, required: bool) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError("This field is required.")
        return None
    if isinstance(value, bool):
        raise ValueError("Enter a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("Enter a number.") from None
    if not math.isfinite(number):
        raise ValueError("Enter a finite number.")
    return number


def _whole(value, *, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ValueError("Enter a whole number of seconds.")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError("Enter a whole number of seconds.") from None
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if not isinstance(number, int) or not low <= number <= high:
        raise ValueError(f"Enter a whole number of seconds from {low} to {high}.")
    return number


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError("Use true or false.")


def _choice(value, choices) -> str:
    if not isinstance(value, str) or value not in choices.values:
        raise ValueError(f"Unknown value {value!r}. Allowed values: {', '.join(choices.values)}.")
    return value


def parse_tag_filter(value) -> dict[str, str]:
    """A tag map, from a dict or from ``key=value, key=value`` text."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        tags = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            key, sep, val = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r} must look like key=value.")
            tags[key.strip()] = val.strip()
        value = tags
    if not isinstance(value, dict):
        raise ValueError("Use a map of tag names to values, e.g. route=tickets.")
    if len(value) > MAX_TAGS:
        raise ValueError(f"At most {MAX_TAGS} tags.")
    for key, val in value.items():
        if not isinstance(key, str) or not TAG_KEY_RE.fullmatch(key):
            raise ValueError(f"Tag name {key!r} must be 1 to 64 letters, digits, '_', '.' or '-'.")
        if not isinstance(val, str) or not val:
            raise ValueError(f"Tag {key!r} needs a text value.")
    return dict(value)


def _targets(value) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = value.replace("\n", ",").replace(" ", ",").split(",")
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError("Use a list of addresses.")
    return [v.strip() for v in value if v.strip()]


def parse_channels(value) -> dict[str, list[str]]:
    """``{"email": [...], "slack": [webhook URLs], "webhook": [URLs]}``, each checked."""
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ValueError('Use an object such as {"email": ["ops@example.com"]}.')
    unknown = sorted(set(value) - set(Channel.values))
    if unknown:
        raise ValueError(
            f"Unknown channel {unknown[0]!r}. Allowed channels: {', '.join(Channel.values)}."
        )
    channels = {}
    for channel in Channel.values:
        if channel not in value:
            continue
        try:
            targets = _targets(value[channel])
        except ValueError as exc:
            raise ValueError(f"{channel}: {exc}") from None
        if len(targets) > MAX_TARGETS_PER_CHANNEL:
            raise ValueError(f"{channel}: at most {MAX_TARGETS_PER_CHANNEL} destinations.")
        for target in targets:
            try:
                (validate_email if channel == Channel.EMAIL else _url)(target)
            except ValidationError:
                kind = "an email address" if channel == Channel.EMAIL else "an http(s) URL"
                raise ValueError(f"{channel}: {target[:200]!r} is not {kind}.") from None
        if targets:
            channels[channel] = list(dict.fromkeys(targets))
    return channels


def breaches(value: float, operator: str, threshold: float) -> bool:
    if operator == Operator.GT:
        return value > threshold
    if operator == Operator.GTE:
        return value >= threshold
    if operator == Operator.LT:
        return value < threshold
    if operator == Operator.LTE:
        return value <= threshold
    return value == threshold


def clean_rule(data: Mapping[str, Any], *, base: Mapping[str, Any] | None = None) -> dict:
    """Validated rule values: ``data`` over ``base`` (the rule's current values when editing,
    else the defaults). Raises ValidationError naming each bad field."""
    unknown = sorted(set(data) - set(RULE_FIELDS))
    errors: dict[str, str] = {
        name: f"Unknown field. Allowed fields: {', '.join(RULE_FIELDS)}." for name in unknown
    }
    raw = {**RULE_DEFAULTS, **(base or {}), **{k: v for k, v in data.items() if k in RULE_FIELDS}}
    clean: dict[str, Any] = {}

    def check(field, parse):
        try:
            clean[field] = parse(raw.get(field))
        except ValueError as exc:
            errors[field] = str(exc)

    def text(limit, *, required=True):
        def parse(value):
            value = "" if value is None else value
            if not isinstance(value, str):
                raise ValueError("Enter text.")
            value = value.strip()
            if required and not value:
                raise ValueError("This field is required.")
            if len(value) > limit:
                raise ValueError(f"At most {limit} characters.")
            return value

        return parse

    def metric(value):
        value = text(100)(value)
        if not NAME_RE.fullmatch(value):
            raise ValueError("Use lowercase letters, digits, '_' and '.' (e.g. api_latency_ms).")
        return value

    check("name", text(200))
    check("description", text(2000, required=False))
    check("metric", metric)
    check("operator", lambda v: _choice(v, Operator))
    check("severity", lambda v: _choice(v, Severity))
    check("aggregation", lambda v: _choice(v, Aggregation))
    check("no_data", lambda v: _choice(v, NoData))
    check("threshold", lambda v: _number(v, required=True))
    check("critical_threshold", lambda v: _number(v, required=False))
    check("recovery_threshold", lambda v: _number(v, required=False))
    check("window_seconds", lambda v: _whole(v, low=10, high=MAX_WINDOW_SECONDS))
    check("pending_seconds", lambda v: _whole(v, low=0, high=MAX_PENDING_SECONDS))
    check("renotify_seconds", lambda v: _whole(v, low=0, high=MAX_WINDOW_SECONDS))
    check("auto_resolve", _boolean)
    check("enabled", _boolean)
    check("tag_filter", parse_tag_filter)
    check("notification_channels", parse_channels)

    if 0 < clean.get("renotify_seconds", 0) < MIN_RENOTIFY_SECONDS:
        errors["renotify_seconds"] = f"Use 0 (never) or at least {MIN_RENOTIFY_SECONDS} seconds."
    op, threshold = clean.get("operator"), clean.get("threshold")
    if op and threshold is not None:
        upward = op in (Operator.GT, Operator.GTE)
        critical = clean.get("critical_threshold")
        if critical is not None:
            if op == Operator.EQ:
                errors["critical_threshold"] = "A second level needs gt, gte, lt or lte."
            elif clean.get("severity") == Severity.CRITICAL:
                errors["critical_threshold"] = (
                    "The rule is already critical; set the severity to info or warning to "
                    "add a critical level."
                )
            elif (critical <= threshold) if upward else (critical >= threshold):
                side = "above" if upward else "below"
                errors["critical_threshold"] = (
                    f"Must be {side} the threshold ({threshold:g}) for this operator."
                )
        recovery = clean.get("recovery_threshold")
        if recovery is not None:
            if op == Operator.EQ:
                errors["recovery_threshold"] = "A recovery threshold needs gt, gte, lt or lte."
            elif (recovery > threshold) if upward else (recovery < threshold):
                side = "at or below" if upward else "at or above"
                errors["recovery_threshold"] = (
                    f"Must be {side} the threshold ({threshold:g}) so the alert resolves only "
                    "once the value is clearly back."
                )
    if errors:
        raise ValidationError({field: [message] for field, message in errors.items()})
    return clean


# --- rules -------------------------------------------------------------------------------


@transaction.atomic
def create_rule(*, actor, data: Mapping[str, Any]) -> AlertRule:
    values = clean_rule(data)
    rule = AlertRule.objects.create(**values)
    rule.refresh_from_db()
    record("alert_rule.created", target=rule, data={"condition": rule.condition}, actor=actor)
    return rule


@transaction.atomic
def update_rule(*, actor, rule: AlertRule, data: Mapping[str, Any]) -> AlertRule:
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
    before = rule_values(rule)
    values = clean_rule(data, base=before)
    changed = {k: [before[k], v] for k, v in values.items() if before[k] != v}
    if not changed:
        return rule
    for field, value in values.items():
        setattr(rule, field, value)
    rule.updated_at = timezone.now()
    rule.save(update_fields=[*changed, "updated_at"])
    record("alert_rule.updated", target=rule, changes=changed, actor=actor)
    if "enabled" in changed and not rule.enabled:
        _resolve_open(rule, actor=actor, note="Rule disabled.")
    return rule


def set_rule_enabled(*, actor, rule: AlertRule, enabled: bool) -> AlertRule:
    return update_rule(actor=actor, rule=rule, data={"enabled": enabled})


@transaction.atomic
def duplicate_rule(*, actor, rule: AlertRule) -> AlertRule:
    """A disabled copy named "<name> (copy)", to edit before enabling."""
    values = rule_values(rule)
    values["name"] = f"{rule.name} (copy)"[:200]
    values["enabled"] = False
    copy = AlertRule.objects.create(**values)
    copy.refresh_from_db()
    record("alert_rule.duplicated", target=copy, data={"from_rule": rule.pk}, actor=actor)
    return copy


@transaction.atomic
def delete_rule(*, actor, rule: AlertRule) -> None:
    """Open alerts are resolved first; the history of past alerts stays (rule set to null)."""
    rule = AlertRule.objects.select_for_update().get(pk=rule.pk)
    _resolve_open(rule, actor=actor, note="Rule deleted.")
    record(
        "alert_rule.deleted",
        target=rule,
        data={"name": rule.name, "condition": rule.condition},
        actor=actor,
    )
    rule.delete()


def _resolve_open(rule: AlertRule, *, actor, note: str) -> None:
    for alert in Alert.objects.filter(rule=rule, status__in=OPEN_STATUSES).order_by("pk"):
        _resolve(alert, actor=actor, note=note, now=timezone.now())


# --- the lifecycle, by people -----------------------------------------------------------


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ValidationError({"note": [f"At most {MAX_NOTE} characters."]})
    return note


@transaction.atomic
def resolve_alert(*, actor, alert: Alert, note: str = "") -> Alert:
    note = _clean_note(note)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if not alert.is_open:
        raise AlertStateError(
            f"Alert {alert.pk} is already resolved"
            + (f" (since {alert.resolved_at:%Y-%m-%d %H:%M:%S} UTC)." if alert.resolved_at else ".")
        )
    _resolve(alert, actor=actor, note=note, now=timezone.now())
    return alert


@transaction.atomic
def acknowledge_alert(*, actor, alert: Alert, note: str = "") -> Alert:
    """Someone is on it: shown on the alert, and re-notification stops until it resolves or
    escalates to critical."""
    note = _clean_note(note)
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.status != AlertStatus.FIRING:
        raise AlertStateError(
            f"Alert {alert.pk} is {alert.status}; only a firing alert can be acknowledged."
        )
    if alert.acknowledged_at:
        raise AlertStateError(f"Alert {alert.pk} is already acknowledged.")
    now = timezone.now()
    alert.acknowledged_at, alert.acknowledged_by, alert.acknowledgement_note = now, actor, note
    alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledgement_note"])
    AlertEvent.objects.create(alert=alert, kind=AlertEvent.Kind.ACKNOWLEDGED, at=now, actor=actor,
                              value=alert.value, note=note)  # fmt: skip
    record("alert.acknowledged", target=alert, data={"note": note}, actor=actor)
    return alert


def _resolve(alert: Alert, *, actor, note: str, now: datetime) -> bool:
    """Close an open alert (by a person, or by the system on recovery). False when another
    evaluator or person closed it first."""
    person = actor if actor is not None and hasattr(actor, "pk") else None
    closed = Alert.objects.filter(pk=alert.pk, status__in=OPEN_STATUSES).update(
        status=AlertStatus.RESOLVED, resolved_at=now, resolved_by=person, resolution_note=note
    )
    if not closed:
        return False
    fired = alert.fired_at is not None or alert.status == AlertStatus.FIRING
    alert.status, alert.resolved_at, alert.resolved_by = AlertStatus.RESOLVED, now, person
    alert.resolution_note = note
    kind = AlertEvent.Kind.RESOLVED if fired else AlertEvent.Kind.CLEARED
    AlertEvent.objects.create(
        alert=alert, kind=kind, at=now, actor=person, value=alert.value, note=note
    )
    record(
        "alert.resolved",
        target=alert,
        data={"rule": alert.rule_name, "note": note, "automatic": person is None},
        actor=actor if actor is not None else "system",
    )
    if fired:
        notify(alert, Notification.Event.RESOLVED, now=now)
    return True


# --- the lifecycle, by evaluation --------------------------------------------------------


OPEN_ALERT_SQL = """
    INSERT INTO monitoring_alerts
        (rule_id, rule_name, metric, condition, tags_key, tags, status, severity, value,
         threshold, started_at, fired_at, resolution_note, acknowledgement_note,
         last_evaluated_at)
    VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, '', '', %s)
    ON CONFLICT (rule_id, tags_key) WHERE status IN ('pending', 'firing') DO NOTHING
    RETURNING id
"""


@transaction.atomic
def open_alert(
    *, rule: AlertRule, tags_key: str, value: float | None, severity: str, now: datetime
) -> Alert | None:
    """A new breach: pending, or firing at once without a pending period. None when an open
    alert for this rule and tag set exists already (another evaluator got there first)."""
    firing = rule.pending_seconds == 0
    status = AlertStatus.FIRING if firing else AlertStatus.PENDING
    threshold = rule.critical_threshold if severity == Severity.CRITICAL and rule.critical_threshold is not None else rule.threshold  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            OPEN_ALERT_SQL,
            [rule.pk, rule.name, rule.metric, rule.condition, tags_key, tags_key or None,
             status, severity, value, threshold, now, now if firing else None, now],
        )  # fmt: skip
        row = cursor.fetchone()
    if row is None:
        return None
    # The row just inserted, as the model (no second read).
    alert = Alert(
        pk=row[0], rule_id=rule.pk, rule_name=rule.name, metric=rule.metric,
        condition=rule.condition, tags_key=tags_key, tags=tags_of(tags_key) or None,
        status=status, severity=severity, value=value, threshold=threshold, started_at=now,
        fired_at=now if firing else None, last_evaluated_at=now,
    )  # fmt: skip
    alert._state.adding = False
    AlertEvent.objects.create(alert=alert, kind=status, at=now, value=value)
    if firing:
        notify(alert, Notification.Event.FIRING, now=now)
    return alert


@transaction.atomic
def fire_alert(*, alert: Alert, value: float | None, severity: str, now: datetime) -> bool:
    """Pending long enough: firing."""
    moved = Alert.objects.filter(pk=alert.pk, status=AlertStatus.PENDING).update(
        status=AlertStatus.FIRING, fired_at=now, value=value, severity=severity,
        last_evaluated_at=now,
    )  # fmt: skip
    if not moved:
        return False
    alert.status, alert.fired_at, alert.value, alert.severity = (
        AlertStatus.FIRING, now, value, severity,
    )  # fmt: skip
    AlertEvent.objects.create(alert=alert, kind=AlertEvent.Kind.FIRING, at=now, value=value)
    notify(alert, Notification.Event.FIRING, now=now)
    return True


@transaction.atomic
def escalate_alert(*, alert: Alert, value: float | None, threshold: float, now: datetime) -> bool:
    """A firing alert crossed the rule's critical level: critical, and everyone is told again,
    acknowledged or not. The acknowledgement ends here (it stays in the history): whoever
    took the warning acknowledges the critical alert again, and re-notification resumes."""
    moved = (
        Alert.objects.filter(pk=alert.pk, status=AlertStatus.FIRING)
        .exclude(severity=Severity.CRITICAL)
        .update(
            severity=Severity.CRITICAL,
            value=value,
            threshold=threshold,
            last_evaluated_at=now,
            acknowledged_at=None,
            acknowledged_by=None,
            acknowledgement_note="",
        )
    )
    if not moved:
        return False
    alert.severity, alert.value, alert.threshold = Severity.CRITICAL, value, threshold
    alert.acknowledged_at, alert.acknowledged_by, alert.acknowledgement_note = None, None, ""
    AlertEvent.objects.create(alert=alert, kind=AlertEvent.Kind.ESCALATED, at=now, value=value)
    notify(alert, Notification.Event.ESCALATED, now=now)
    return True


@transaction.atomic
def renotify_alert(*, alert: Alert, now: datetime) -> bool:
    moved = Alert.objects.filter(
        pk=alert.pk,
        status=AlertStatus.FIRING,
        acknowledged_at__isnull=True,
        last_notified_at=alert.last_notified_at,
    ).update(last_notified_at=now)
    if not moved:
        return False
    AlertEvent.objects.create(
        alert=alert, kind=AlertEvent.Kind.RENOTIFIED, at=now, value=alert.value
    )
    notify(alert, Notification.Event.RENOTIFY, now=now)
    return True


@transaction.atomic
def recover_alert(*, alert: Alert, value: float | None, now: datetime, no_data: bool) -> bool:
    """The value is back (or gone, with no-data "ok"): resolved, or cleared if still pending."""
    alert.value = value if value is not None else alert.value
    note = "No data: treated as OK." if no_data else "Recovered."
    return _resolve(alert, actor=None, note=note, now=now)


def update_open_values(rows: Iterable[tuple[int, float | None, str, float]], *, now) -> None:
    """The current value (and severity, threshold) of open alerts still breaching, in one
    statement."""
    rows = list(rows)
    if not rows:
        return
    ids, values, severities, thresholds = (list(column) for column in zip(*rows, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(
            """UPDATE monitoring_alerts a SET value = coalesce(u.value, a.value),
                   severity = u.severity, threshold = u.threshold, last_evaluated_at = %s
               FROM unnest(%s::bigint[], %s::float8[], %s::text[], %s::float8[])
                    AS u(id, value, severity, threshold)
               WHERE a.id = u.id AND a.status IN ('pending', 'firing')""",
            [now, ids, values, severities, thresholds],
        )


def record_rule_results(
    results: Iterable[tuple[int, float | None]], errors: Mapping[int, str], *, now
) -> None:
    """Each evaluated rule's time and value, and its error (or '' after a clean run)."""
    results = list(results)
    if results:
        ids, values = (list(column) for column in zip(*results, strict=True))
        with connection.cursor() as cursor:
            cursor.execute(
                """UPDATE alert_rules r SET last_evaluated_at = %s, last_value = u.value,
                       last_error = '', last_error_at = NULL
                   FROM unnest(%s::bigint[], %s::float8[]) AS u(id, value) WHERE r.id = u.id""",
                [now, ids, values],
            )
    for rule_id, message in errors.items():
        AlertRule.objects.filter(pk=rule_id).update(
            last_evaluated_at=now, last_error=message[:2000], last_error_at=now
        )


# --- notifications -----------------------------------------------------------------------


def active_silence(alert: Alert, *, now: datetime) -> Silence | None:
    return (
        Silence.objects.filter(starts_at__lte=now, ends_at__gt=now)
        .filter(Q(rule_id=alert.rule_id) | Q(metric=alert.metric))
        .order_by("-ends_at")
        .first()
    )


def notify(alert: Alert, event: str, *, now: datetime) -> list[Notification]:
    """One Notification per destination of the rule, each delivered by its own task after the
    commit; nothing but a history line while a silence covers the alert (nothing at all for a
    rule without destinations)."""
    from monitoring import tasks

    rule = (
        AlertRule.objects.filter(pk=alert.rule_id).only("notification_channels").first()
        if alert.rule_id is not None
        else None
    )
    raw = rule.notification_channels if rule else {}
    try:
        channels = parse_channels(raw)
    except ValueError as exc:
        # A rule inserted from SQL never passed validation: say so on the rule, send nothing.
        raise ValueError(f"notification_channels: {exc}") from None
    if not channels:
        return []
    silence = active_silence(alert, now=now)
    if silence is not None:
        AlertEvent.objects.create(
            alert=alert, kind=AlertEvent.Kind.SILENCED, at=now, value=alert.value,
            note=f"{Notification.Event(event).label} not sent: silenced until "
            f"{silence.ends_at:%Y-%m-%d %H:%M} UTC ({silence.reason}).",
        )  # fmt: skip
        return []
    Alert.objects.filter(pk=alert.pk).update(last_notified_at=now)
    alert.last_notified_at = now
    created = Notification.objects.bulk_create(
        Notification(alert=alert, event=event, channel=channel, target=target, created_at=now)
        for channel, targets in channels.items()
        for target in targets
    )
    for notification in created:
        transaction.on_commit(partial(tasks.deliver_notification.delay, notification.pk))
    return created


def attempt_delivery(*, notification_id: int, last_try: bool) -> str:
    """One try at sending a notification; the attempt is stored and audited. Returns the
    outcome: ``sent``, ``retry`` (5xx, timeout, connection error; unless ``last_try``) or
    ``failed`` (4xx, bad destination, retries used up). A finished notification is left alone
    (a task run twice sends once)."""
    notification = Notification.objects.select_related("alert").filter(pk=notification_id).first()
    if notification is None or notification.status in (
        Notification.Status.SENT,
        Notification.Status.FAILED,
    ):
        return "done"
    started = time.monotonic()
    try:
        status_code = notifications.send(notification)
        outcome, detail = DeliveryAttempt.Outcome.SENT, "delivered"
    except notifications.DeliveryError as exc:
        status_code, detail = exc.status_code, str(exc)
        outcome = (
            DeliveryAttempt.Outcome.RETRY
            if exc.retryable and not last_try
            else DeliveryAttempt.Outcome.FAILED
        )
    duration = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    with transaction.atomic():
        notification = Notification.objects.select_for_update().get(pk=notification_id)
        notification.attempts += 1
        notification.status = {
            DeliveryAttempt.Outcome.SENT: Notification.Status.SENT,
            DeliveryAttempt.Outcome.RETRY: Notification.Status.RETRYING,
            DeliveryAttempt.Outcome.FAILED: Notification.Status.FAILED,
        }[outcome]
        if outcome != DeliveryAttempt.Outcome.RETRY:
            notification.finished_at = now
        notification.save(update_fields=["attempts", "status", "finished_at"])
        DeliveryAttempt.objects.create(
            notification=notification, number=notification.attempts, at=now, outcome=outcome,
            status_code=status_code, detail=detail[:2000], duration_ms=duration,
        )  # fmt: skip
        record(
            f"alert.notification.{outcome}",
            target=notification.alert,
            data={
                "notification": notification.pk,
                "channel": notification.channel,
                "target": notification.target,
                "event": notification.event,
                "attempt": notification.attempts,
                "status_code": status_code,
                "detail": detail[:500],
            },
            actor="system",
        )
    return outcome


# --- silences ----------------------------------------------------------------------------


@transaction.atomic
def create_silence(
    *,
    actor,
    rule: AlertRule | None = None,
    metric: str = "",
    starts_at: datetime | None = None,
    ends_at: datetime | None,
    reason: str,
) -> Silence:
    errors = {}
    metric = (metric or "").strip()
    if rule is None and not metric:
        errors["rule"] = "Choose a rule, or a metric to silence every rule of."
    elif rule is not None and metric:
        errors["metric"] = "Choose either a rule or a metric, not both."
    elif metric and not NAME_RE.fullmatch(metric):
        errors["metric"] = "Use lowercase letters, digits, '_' and '.'."
    now = timezone.now()
    starts_at = starts_at or now
    if ends_at is None:
        errors["ends_at"] = "This field is required."
    elif ends_at <= max(starts_at, now):
        errors["ends_at"] = "Must be in the future and after the start."
    elif ends_at - starts_at > timedelta(days=90):
        errors["ends_at"] = "A silence lasts at most 90 days."
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = "Say why (a maintenance window, a known incident)."
    elif len(reason) > MAX_NOTE:
        errors["reason"] = f"At most {MAX_NOTE} characters."
    if errors or ends_at is None:
        raise ValidationError({field: [message] for field, message in errors.items()})
    silence = Silence.objects.create(
        rule=rule, metric=metric, starts_at=starts_at, ends_at=ends_at, reason=reason,
        created_by=actor if hasattr(actor, "pk") else None, created_at=now,
    )  # fmt: skip
    record(
        "alert.silence.created",
        target=silence,
        data={
            "rule": rule.pk if rule else None,
            "metric": metric,
            "starts_at": starts_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            "reason": reason,
        },
        actor=actor,
    )
    return silence


@transaction.atomic
def end_silence(*, actor, silence: Silence) -> Silence:
    now = timezone.now()
    if silence.ends_at <= now:
        raise ValidationError({"silence": ["This silence has already ended."]})
    old_end = silence.ends_at
    silence.ends_at = max(now, silence.starts_at + timedelta(microseconds=1))
    silence.save(update_fields=["ends_at"])
    record(
        "alert.silence.ended",
        target=silence,
        changes={"ends_at": [old_end.isoformat(), silence.ends_at.isoformat()]},
        actor=actor,
    )
    return silence


def tags_of(tags_key: str) -> dict[str, str]:
    return json.loads(tags_key) if tags_key else {}
