"""Reads for the dashboard, the explorer and /metrics. Every chart reads the rollups only."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from adminsite import health as adminsite_health
from monitoring import collectors
from monitoring.metrics import PREDEFINED


@dataclass(frozen=True)
class Range:
    key: str
    label: str
    span: timedelta
    bucket_seconds: int


# A chart holds at most a few hundred buckets whatever the range: one-minute buckets for the
# last hour, coarser ones as the range grows.
RANGES = {
    r.key: r
    for r in (
        Range("1h", "1 h", timedelta(hours=1), 60),
        Range("6h", "6 h", timedelta(hours=6), 300),
        Range("24h", "24 h", timedelta(hours=24), 900),
        Range("7d", "7 d", timedelta(days=7), 3600),
    )
}
DEFAULT_RANGE = "1h"

QUEUE_WARNING, QUEUE_CRITICAL = 100, 1000
DISK_WARNING, DISK_CRITICAL = 80.0, 90.0


def parse_range(value: str | None) -> Range:
    return RANGES.get(value or DEFAULT_RANGE, RANGES[DEFAULT_RANGE])


def series(
    names: list[str], rng: Range, *, tags: dict[str, str] | None = None, now: datetime | None = None
) -> dict[str, dict[str, list]]:
    """Per metric: bucket start times, avg, min, max, p95 and count, over every tag set (or those
    containing ``tags``). One query for all ``names``. A bucket wider than a minute reports the
    highest p95 in it (an upper bound; histograms are not merged here). Ranges bucketed by the
    hour or more read the hourly rollups: 168 rows a week per tag set instead of 10,080."""
    now = now or timezone.now()
    since = now - rng.span
    table, column = (
        ("monitoring_rollups_hourly", "hour")
        if rng.bucket_seconds % 3600 == 0
        else ("monitoring_rollups", "minute")
    )
    params: list = [rng.bucket_seconds, names, since]
    tag_clause = ""
    if tags:
        tag_clause = " AND tags @> %s::jsonb"
        params.append(json.dumps(tags))
    # The bucket comes back as ISO 8601 text and the average already rounded: parsing and
    # formatting a timestamp per row in Python took most of a week-long chart's time.
    sql = f"""
        SELECT name,
               to_char(date_bin(make_interval(secs => %s), {column}, timestamptz '2000-01-01')
                       AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"') AS bucket,
               round((sum(sum) / sum(count))::numeric, 4)::float8, min(min), max(max),
               max(p95), sum(count)::bigint
        FROM {table}
        WHERE name = ANY(%s) AND {column} >= %s{tag_clause}
        GROUP BY name, bucket ORDER BY name, bucket"""  # noqa: S608 - fixed clauses, values bound
    result: dict[str, dict[str, list]] = {
        name: {"t": [], "avg": [], "min": [], "max": [], "p95": [], "count": []} for name in names
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for name, bucket, avg, low, high, p95, count in cursor.fetchall():
            data = result[name]
            data["t"].append(bucket)
            data["avg"].append(avg)
            data["min"].append(low)
            data["max"].append(high)
            data["p95"].append(p95)
            data["count"].append(count)
    return result


def dashboard_charts(rng: Range, *, now: datetime | None = None) -> list[dict]:
    data = series(list(PREDEFINED), rng, now=now)
    return [
        {"name": name, "unit": unit, "label": label, **data[name]}
        for name, (unit, label) in PREDEFINED.items()
    ]


def known_metrics() -> list[str]:
    """Every metric name with rollups in the last week, predefined ones first."""
    since = timezone.now() - timedelta(days=7)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT name FROM monitoring_rollups WHERE minute >= %s ORDER BY name", [since]
        )
        seen = [row[0] for row in cursor.fetchall()]
    return list(PREDEFINED) + [n for n in seen if n not in PREDEFINED]


def tag_sets(name: str, *, limit: int = 50) -> list[dict]:
    since = timezone.now() - timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT tags_key FROM monitoring_rollups WHERE name = %s AND minute >= %s"
            " AND tags_key <> '' LIMIT %s",
            [name, since, limit],
        )
        return [json.loads(row[0]) for row in cursor.fetchall()]


def latest_values() -> list[tuple[str, str, float]]:
    """(name, tags_key, last value) of every metric and tag set seen in the last 5 minutes."""
    since = timezone.now() - timedelta(minutes=5)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT DISTINCT ON (name, tags_key) name, tags_key, last
               FROM monitoring_rollups WHERE minute >= %s
               ORDER BY name, tags_key, minute DESC""",
            [since],
        )
        return cursor.fetchall()


# --- health --------------------------------------------------------------------------------


def _level(value: float, warning: float, critical: float) -> str:
    return "critical" if value >= critical else "warning" if value >= warning else "healthy"


def health_checks(*, firing: dict[str, int] | None = None) -> list[dict]:
    """Component checks: database, Redis, workers (adminsite.health), queue depth, firing
    alerts (``firing``: the firing_counts() already read, if any) and disk."""
    checks = []
    labels = {"database": "PostgreSQL", "redis": "Redis", "workers": "Celery workers"}
    for name, problem in adminsite_health.readiness().items():
        level = (
            "healthy"
            if problem is None
            else "warning"
            if problem.startswith("unknown")
            else "critical"
        )
        checks.append(
            {"name": name, "label": labels[name], "health": level, "detail": problem or "ready"}
        )
    try:
        depth = collectors.queue_depth()
        checks.append(
            {
                "name": "queue",
                "label": "Queue depth",
                "health": _level(depth, QUEUE_WARNING, QUEUE_CRITICAL),
                "detail": f"{depth} task{'s' if depth != 1 else ''} waiting",
            }
        )
    except Exception as exc:  # noqa: BLE001 - Redis down is reported by its own check
        checks.append(
            {
                "name": "queue",
                "label": "Queue depth",
                "health": "warning",
                "detail": f"unknown: {exc.__class__.__name__}",
            }
        )
    checks.append(alert_health(firing if firing is not None else firing_counts()))
    usage = shutil.disk_usage(settings.BASE_DIR)
    percent = usage.used / usage.total * 100 if usage.total else 0.0
    checks.append(
        {
            "name": "disk",
            "label": "Disk",
            "health": _level(percent, DISK_WARNING, DISK_CRITICAL),
            "detail": f"{percent:.0f} % used, {usage.free / 2**30:.1f} GiB free",
        }
    )
    return checks


def overall(checks: list[dict]) -> str:
    levels = {c["health"] for c in checks}
    return "critical" if "critical" in levels else "warning" if "warning" in levels else "healthy"


# --- alerting ------------------------------------------------------------------------------

ALERT_PAGE_SIZE = 50


def _severity_order():
    from django.db.models import Case, IntegerField, Value, When

    from monitoring.models import SEVERITY_RANK

    return Case(
        *(When(severity=s, then=Value(rank)) for s, rank in SEVERITY_RANK.items()),
        output_field=IntegerField(),
    )


def active_alerts(*, limit: int = 50) -> list:
    """Open alerts, firing before pending, most severe and oldest first."""
    from monitoring.models import OPEN_STATUSES, Alert

    return list(
        Alert.objects.filter(status__in=OPEN_STATUSES)
        .select_related("acknowledged_by")
        .annotate(rank=_severity_order())
        .order_by("status", "-rank", "started_at")[:limit]  # "firing" sorts before "pending"
    )


def firing_counts() -> dict[str, int]:
    """Firing alerts per severity (and ``pending``, ``total``), in one query."""
    from django.db.models import Count, Q

    from monitoring.models import Alert, AlertStatus, Severity

    firing = Q(status=AlertStatus.FIRING)
    counts = Alert.objects.filter(status__in=[AlertStatus.PENDING, AlertStatus.FIRING]).aggregate(
        **{s: Count("id", filter=firing & Q(severity=s)) for s in Severity.values},
        pending=Count("id", filter=Q(status=AlertStatus.PENDING)),
    )
    counts["total"] = sum(counts[s] for s in Severity.values)
    counts["by_severity"] = [(s, counts[s]) for s in reversed(Severity.values)]
    return counts


def alert_health(counts: dict[str, int]) -> dict:
    """The health check of the alerts: critical with any firing critical alert, warning with
    any firing warning."""
    if counts["critical"]:
        level = "critical"
    elif counts["warning"]:
        level = "warning"
    else:
        level = "healthy"
    parts = [f"{counts[s]} {s}" for s in ("critical", "warning", "info") if counts[s]]
    detail = f"{' · '.join(parts)} firing" if parts else "no alert firing"
    return {"name": "alerts", "label": "Alerts", "health": level, "detail": detail}


def alert_list(filters: dict):
    """Alerts matching the history page's (and the API's) filters, newest first."""
    from monitoring.models import OPEN_STATUSES, Alert

    alerts = Alert.objects.select_related("resolved_by", "acknowledged_by")
    status = filters.get("status")
    if status == "open":
        alerts = alerts.filter(status__in=OPEN_STATUSES)
    elif status:
        alerts = alerts.filter(status=status)
    if filters.get("severity"):
        alerts = alerts.filter(severity=filters["severity"])
    if filters.get("rule"):
        alerts = alerts.filter(rule_id=filters["rule"])
    if filters.get("metric"):
        alerts = alerts.filter(metric=filters["metric"])
    if filters.get("since"):
        alerts = alerts.filter(started_at__gte=filters["since"])
    return alerts.order_by("-started_at", "-id")


def alert_detail(pk: int):
    """The alert with its history and every notification with its attempts (four queries)."""
    from django.db.models import Prefetch
    from django.shortcuts import get_object_or_404

    from monitoring.models import Alert, AlertEvent, Notification

    return get_object_or_404(
        Alert.objects.select_related("rule", "resolved_by", "acknowledged_by").prefetch_related(
            Prefetch("events", queryset=AlertEvent.objects.select_related("actor")),
            Prefetch(
                "notifications",
                queryset=Notification.objects.prefetch_related("attempt_log"),
            ),
        ),
        pk=pk,
    )


def rule_list():
    """Every rule with its open alert count, by name."""
    from django.db.models import Count, Q

    from monitoring.models import OPEN_STATUSES, AlertRule

    return AlertRule.objects.annotate(
        open_alerts=Count("alerts", filter=Q(alerts__status__in=OPEN_STATUSES))
    ).order_by("name", "id")


def rule_choices() -> list[tuple[int, str]]:
    from monitoring.models import AlertRule

    return list(AlertRule.objects.order_by("name", "id").values_list("id", "name"))


def silence_list(*, limit: int = 100) -> list:
    """Current and upcoming silences first (soonest to end), then the most recent past ones."""
    from django.db.models import Case, IntegerField, Value, When

    from monitoring.models import Silence

    now = timezone.now()
    return list(
        Silence.objects.select_related("rule", "created_by")
        .annotate(
            past=Case(
                When(ends_at__lte=now, then=Value(1)), default=Value(0), output_field=IntegerField()
            )
        )  # fmt: skip
        .order_by("past", "ends_at", "-id")[:limit]
    )
