"""Alert evaluation: every enabled rule in one set-based pass, grouped by tag set.

Values come from the per-minute rollups, joined to the rules in one query:

* ``last`` is exact at any window: the newest rollup ``last`` whose ``last_at`` is inside the
  window (a minute's ``last`` and ``last_at`` are those of its newest point);
* ``avg``, ``min``, ``max``, ``sum``, ``count`` and ``p95`` read whole minutes: every minute
  the window touches (a 5-minute window at 12:03:30 reads 11:58 to 12:03); ``p95`` merges the
  minutes' histograms (within about 5 % of the true value);
* a window under a minute (``avg`` over the last 30 s) reads the raw points instead, exactly.

A rule with no tag filter yields one value, and one alert, per tag set of its metric; a tag
filter narrows the tag sets it reads. Evaluation runs every 10 s from beat and after each
flush for the metrics just written. What it decides is written by monitoring/services.py.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from monitoring import services, storage
from monitoring.models import (
    OPEN_STATUSES,
    SEVERITY_RANK,
    Aggregation,
    Alert,
    AlertRule,
    AlertStatus,
    NoData,
    Operator,
    Severity,
)

logger = logging.getLogger(__name__)

RAW_WINDOW_LIMIT = 60  # windows shorter than this read raw points
_TAGS_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)

# Each rule's bounds are computed once (the CTE), not per joined row.
RULES_CTE = """
    WITH r AS MATERIALIZED (
        SELECT id, metric, aggregation, tag_filter, tag_filter <> '{}'::jsonb AS filtered,
               date_trunc('minute', %(now)s - window_seconds * interval '1 second') AS first_minute,
               %(now)s - window_seconds * interval '1 second' AS window_start
        FROM alert_rules WHERE id = ANY(%(ids)s)
    )
"""
ROLLUP_JOIN = """
    FROM r
    JOIN monitoring_rollups m
      ON m.name = r.metric
     AND m.minute >= r.first_minute
     AND m.minute >= %(since)s AND m.minute <= %(now)s
     AND (NOT r.filtered OR coalesce(m.tags, '{}'::jsonb) @> r.tag_filter)
"""

# Constant SQL fragments joined; every value is a bound parameter.
ROLLUP_SQL = (
    RULES_CTE  # noqa: S608
    + """
    SELECT r.id, m.tags_key,
        CASE r.aggregation
            WHEN 'avg' THEN sum(m.sum) / nullif(sum(m.count), 0)
            WHEN 'min' THEN min(m.min)
            WHEN 'max' THEN max(m.max)
            WHEN 'sum' THEN sum(m.sum)
            WHEN 'count' THEN sum(m.count)::float8
        END AS value
"""
    + ROLLUP_JOIN
    + """
    GROUP BY r.id, r.aggregation, m.tags_key
"""
)

# ``last``: the newest rollup ``last`` inside the window, per rule and tag set (a sort of the
# last rules' rows only, instead of an argmax over every rule's).
LAST_SQL = (
    RULES_CTE  # noqa: S608
    + """
    SELECT DISTINCT ON (r.id, m.tags_key) r.id, m.tags_key, m.last
"""
    + ROLLUP_JOIN
    + """
     AND m.last_at > r.window_start AND m.last_at <= %(now)s
    ORDER BY r.id, m.tags_key, m.last_at DESC
"""
)

# p95 over whole minutes: the minutes' histogram buckets summed per rule and tag set.
P95_SQL = (
    RULES_CTE  # noqa: S608
    + """
    SELECT r.id, m.tags_key, h.key, sum(h.value::bigint), min(m.min), max(m.max)
"""
    + ROLLUP_JOIN
    + """
    CROSS JOIN LATERAL jsonb_each_text(m.hist) AS h(key, value)
    GROUP BY r.id, m.tags_key, h.key
"""
)

# Sub-minute windows, exact, from the raw points. The constant bounds (the widest such window,
# the metrics concerned) let PostgreSQL prune partitions, use the BRIN index on time and drop
# other metrics' points while scanning; the per-rule window is applied in the join.
RAW_SQL = """
    SELECT r.id, p.tags,
        CASE r.aggregation
            WHEN 'avg' THEN avg(p.value)
            WHEN 'min' THEN min(p.value)
            WHEN 'max' THEN max(p.value)
            WHEN 'sum' THEN sum(p.value)
            WHEN 'count' THEN count(*)::float8
            WHEN 'p95' THEN percentile_cont(0.95) WITHIN GROUP (ORDER BY p.value)
        END AS value
    FROM alert_rules r
    JOIN monitoring_points p
      ON p.name = r.metric
     AND p.time > %(now)s - r.window_seconds * interval '1 second'
     AND p.time <= %(now)s
     AND (r.tag_filter = '{}'::jsonb OR coalesce(p.tags, '{}'::jsonb) @> r.tag_filter)
    WHERE r.id = ANY(%(ids)s) AND p.time > %(since)s AND p.name = ANY(%(metrics)s)
    GROUP BY r.id, r.aggregation, p.tags
"""


@dataclass
class Report:
    """What one evaluation pass did."""

    rules: int = 0
    groups: int = 0
    opened: int = 0
    fired: int = 0
    escalated: int = 0
    renotified: int = 0
    resolved: int = 0
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def changes(self) -> int:
        return self.opened + self.fired + self.escalated + self.renotified + self.resolved


# What evaluation reads of a rule (the rest, timestamps and descriptions, is not parsed for
# a thousand rules every 10 s).
EVALUATED_FIELDS = (
    "id", "name", "metric", "operator", "threshold", "severity", "aggregation",
    "window_seconds", "pending_seconds", "tag_filter", "no_data", "renotify_seconds",
    "auto_resolve", "recovery_threshold", "critical_threshold",
)  # fmt: skip


def _rules(metrics: Iterable[str] | None, rule_ids: Iterable[int] | None) -> list[AlertRule]:
    rules = AlertRule.objects.filter(enabled=True).only(*EVALUATED_FIELDS).order_by("pk")
    if metrics is not None:
        rules = rules.filter(metric__in=list(metrics))
    if rule_ids is not None:
        rules = rules.filter(pk__in=list(rule_ids))
    return list(rules)


def uses_raw(rule: AlertRule) -> bool:
    return rule.window_seconds < RAW_WINDOW_LIMIT and rule.aggregation != Aggregation.LAST


Readings = dict[int, dict[str, float]]  # rule id -> tags_key -> value


def read_values(rules: list[AlertRule], *, now: datetime) -> Readings:
    """The aggregated value of every rule per tag set; tag sets without data are absent."""
    readings: Readings = defaultdict(dict)
    raw = [r.pk for r in rules if uses_raw(r)]
    by_rollup = [r for r in rules if not uses_raw(r)]
    p95 = [r.pk for r in by_rollup if r.aggregation == Aggregation.P95]
    last = [r.pk for r in by_rollup if r.aggregation == Aggregation.LAST]
    rollup = [r.pk for r in by_rollup if r.aggregation not in (Aggregation.P95, Aggregation.LAST)]
    with connection.cursor() as cursor:
        # The widest window bounds every rule's: a constant PostgreSQL can use in the index.
        widest = max(r.window_seconds for r in rules)
        since = (now - timedelta(seconds=widest)).replace(second=0, microsecond=0)
        for sql, ids in ((ROLLUP_SQL, rollup), (LAST_SQL, last)):
            if not ids:
                continue
            cursor.execute(sql, {"now": now, "ids": ids, "since": since})
            for rule_id, tags_key, value in cursor.fetchall():
                if value is not None:
                    readings[rule_id][tags_key] = value
        if p95:
            cursor.execute(P95_SQL, {"now": now, "ids": p95, "since": since})
            merged: dict[tuple[int, str], tuple[dict[int, int], list[float]]] = {}
            for rule_id, tags_key, bucket, count, low, high in cursor.fetchall():
                hist, bounds = merged.setdefault((rule_id, tags_key), ({}, [low, high]))
                key = storage.NONPOSITIVE if bucket == storage.NONPOSITIVE_BUCKET else int(bucket)
                hist[key] = hist.get(key, 0) + int(count)
                bounds[0], bounds[1] = min(bounds[0], low), max(bounds[1], high)
            for (rule_id, tags_key), (hist, (low, high)) in merged.items():
                readings[rule_id][tags_key] = storage.quantile_from_hist(hist, 0.95, low, high)
        if raw:
            raw_rules = [r for r in rules if uses_raw(r)]
            since = now - timedelta(seconds=max(r.window_seconds for r in raw_rules))
            metrics = sorted({r.metric for r in raw_rules})
            cursor.execute(RAW_SQL, {"now": now, "ids": raw, "since": since, "metrics": metrics})
            for rule_id, tags, value in cursor.fetchall():
                if isinstance(tags, str):
                    tags = json.loads(tags)
                if value is not None:
                    readings[rule_id][_TAGS_ENCODER.encode(tags) if tags else ""] = value
    return readings


def level(rule: AlertRule, value: float | None) -> str | None:
    """The severity ``value`` breaches at (the critical level first), or None. No value (no
    data, treated as breaching) breaches at the rule's own severity."""
    if value is None:
        return rule.severity
    if rule.critical_threshold is not None and services.breaches(
        value, rule.operator, rule.critical_threshold
    ):
        return Severity.CRITICAL
    if services.breaches(value, rule.operator, rule.threshold):
        return rule.severity
    return None


def recovered(rule: AlertRule, value: float) -> bool:
    """Back on the good side of the recovery threshold (hysteresis), or of the threshold."""
    line = rule.recovery_threshold if rule.recovery_threshold is not None else rule.threshold
    return not services.breaches(value, rule.operator, line)


def threshold_for(rule: AlertRule, severity: str) -> float:
    if severity == Severity.CRITICAL and rule.critical_threshold is not None:
        return rule.critical_threshold
    return rule.threshold


def _open_alerts(rule_ids: list[int]) -> dict[int, dict[str, Alert]]:
    found: dict[int, dict[str, Alert]] = defaultdict(dict)
    for alert in Alert.objects.filter(rule_id__in=rule_ids, status__in=OPEN_STATUSES):
        # rule_id__in: never None here.
        found[cast(int, alert.rule_id)][alert.tags_key] = alert
    return found


def evaluate(
    *,
    now: datetime | None = None,
    metrics: Iterable[str] | None = None,
    rule_ids: Iterable[int] | None = None,
) -> Report:
    """Evaluate the enabled rules (of ``metrics`` / ``rule_ids`` when given) at ``now``."""
    now = now or timezone.now()
    report = Report()
    rules = _rules(metrics, rule_ids)
    if not rules:
        return report
    report.rules = len(rules)
    ids = [r.pk for r in rules]
    try:
        readings = read_values(rules, now=now)
    except DatabaseError as exc:
        # A broken read is every rule's error: recorded on each, shown on the rules page.
        message = f"Evaluation failed: {exc}".strip()
        logger.exception("alert evaluation failed")
        services.record_rule_results([], dict.fromkeys(ids, message), now=now)
        report.errors = dict.fromkeys(ids, message)
        return report
    open_alerts = _open_alerts(ids)
    still: list[tuple[int, float | None, str, float]] = []
    results: list[tuple[int, float | None]] = []
    for rule in rules:
        groups = readings.get(rule.pk, {})
        report.groups += len(groups)
        rule_alerts = open_alerts.get(rule.pk, {})
        try:
            if _may_change(rule, groups, rule_alerts):
                # A transaction per rule: one whose transition fails leaves the others'.
                with transaction.atomic():
                    _evaluate_rule(rule, groups, rule_alerts, now, report, still)
        except Exception as exc:
            logger.exception("alert rule %s failed", rule.pk)
            report.errors[rule.pk] = f"{exc.__class__.__name__}: {exc}"
            continue
        worst = _worst(rule, groups)
        results.append((rule.pk, worst))
    services.update_open_values(still, now=now)
    services.record_rule_results(results, report.errors, now=now)
    return report


def _may_change(rule: AlertRule, groups: dict[str, float], open_alerts: dict) -> bool:
    """Whether the rule has anything to write: most rules, most of the time, do not (no open
    alert, nothing breaching), and skipping their transaction keeps a cycle cheap."""
    if open_alerts:
        return True
    if not groups:
        return rule.no_data == NoData.ALERTING
    return any(level(rule, value) is not None for value in groups.values())


def _worst(rule: AlertRule, groups: dict[str, float]) -> float | None:
    """The value shown for a rule: the one furthest into the breaching side."""
    if not groups:
        return None
    values = groups.values()
    return min(values) if rule.operator in (Operator.LT, Operator.LTE) else max(values)


def _evaluate_rule(
    rule: AlertRule,
    groups: dict[str, float],
    open_alerts: dict[str, Alert],
    now: datetime,
    report: Report,
    still: list,
) -> None:
    for tags_key, value in groups.items():
        _step(rule, tags_key, value, open_alerts.get(tags_key), now, report, still)
    missing = [key for key in open_alerts if key not in groups]
    for tags_key in missing:
        alert = open_alerts[tags_key]
        if rule.no_data == NoData.KEEP:
            continue
        if rule.no_data == NoData.ALERTING:
            _step(rule, tags_key, None, alert, now, report, still)
        elif (rule.auto_resolve or alert.status == AlertStatus.PENDING) and services.recover_alert(
            alert=alert, value=None, now=now, no_data=True
        ):
            report.resolved += 1
    if not groups and not open_alerts and rule.no_data == NoData.ALERTING:
        key = _TAGS_ENCODER.encode(rule.tag_filter) if rule.tag_filter else ""
        _step(rule, key, None, None, now, report, still)


def _step(rule, tags_key, value, alert, now, report, still) -> None:
    """One tag set's value against its open alert (if any)."""
    severity = level(rule, value)
    if alert is None:
        if severity is not None and services.open_alert(
            rule=rule, tags_key=tags_key, value=value, severity=severity, now=now
        ):
            report.opened += 1
        return
    if severity is None:
        if alert.status == AlertStatus.PENDING:
            # A pending period needs the breach to last: any good value clears it.
            if services.recover_alert(alert=alert, value=value, now=now, no_data=False):
                report.resolved += 1
            return
        if rule.auto_resolve and recovered(rule, value):
            if services.recover_alert(alert=alert, value=value, now=now, no_data=False):
                report.resolved += 1
            return
        # Between the threshold and the recovery threshold, or waiting for a person.
        still.append((alert.pk, value, alert.severity, alert.threshold))
        return
    if alert.status == AlertStatus.PENDING:
        if now - alert.started_at >= timedelta(seconds=rule.pending_seconds):
            if services.fire_alert(alert=alert, value=value, severity=severity, now=now):
                report.fired += 1
            return
        still.append((alert.pk, value, severity, threshold_for(rule, severity)))
        return
    if SEVERITY_RANK[severity] > SEVERITY_RANK[alert.severity] and severity == Severity.CRITICAL:
        if services.escalate_alert(
            alert=alert, value=value, threshold=threshold_for(rule, severity), now=now
        ):
            report.escalated += 1
        return
    if (
        rule.renotify_seconds
        and alert.acknowledged_at is None
        and alert.last_notified_at is not None
        and now - alert.last_notified_at >= timedelta(seconds=rule.renotify_seconds)
        and services.renotify_alert(alert=alert, now=now)
    ):
        report.renotified += 1
    # Severity follows the value down as well as up (critical back to warning level).
    still.append((alert.pk, value, severity, threshold_for(rule, severity)))


def preview(rule_values: dict, *, now: datetime | None = None) -> dict:
    """The live preview of an unsaved rule: its current value per tag set (up to 20) and
    whether it would fire now, computed as an evaluation would, in a transaction rolled back."""
    now = now or timezone.now()
    result: dict = {"groups": [], "error": ""}

    class _RollbackError(Exception):
        pass

    try:
        with transaction.atomic():
            fields = dict(rule_values)
            fields["enabled"] = True
            rule = AlertRule.objects.create(**fields)
            readings = read_values([rule], now=now).get(rule.pk, {})
            raise _RollbackError
    except _RollbackError:
        pass
    except DatabaseError as exc:
        result["error"] = str(exc)
        return result
    for tags_key, value in sorted(readings.items(), key=lambda kv: kv[0])[:20]:
        result["groups"].append(
            {
                "tags": json.loads(tags_key) if tags_key else {},
                "value": value,
                "severity": level(rule, value),
            }
        )
    result["total"] = len(readings)
    result["firing"] = sum(1 for g in result["groups"] if g["severity"])
    return result
