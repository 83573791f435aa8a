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
    highest minute p95 in it (an upper bound; minute histograms are not merged here)."""
    now = now or timezone.now()
    since = now - rng.span
    params: list = [rng.bucket_seconds, names, since]
    tag_clause = ""
    if tags:
        tag_clause = " AND tags @> %s::jsonb"
        params.append(json.dumps(tags))
    sql = f"""
        SELECT name,
               date_bin(make_interval(secs => %s), minute, timestamptz '2000-01-01') AS bucket,
               sum(sum) / sum(count), min(min), max(max), max(p95), sum(count)
        FROM monitoring_rollups
        WHERE name = ANY(%s) AND minute >= %s{tag_clause}
        GROUP BY name, bucket ORDER BY name, bucket"""  # noqa: S608 - fixed clause, values bound
    result = {
        name: {"t": [], "avg": [], "min": [], "max": [], "p95": [], "count": []} for name in names
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for name, bucket, avg, low, high, p95, count in cursor.fetchall():
            data = result[name]
            data["t"].append(bucket.isoformat())
            data["avg"].append(round(avg, 4))
            data["min"].append(low)
            data["max"].append(high)
            data["p95"].append(p95)
            data["count"].append(int(count))
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


def health_checks() -> list[dict]:
    """Component checks: database, Redis, workers (adminsite.health), queue depth and disk."""
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
