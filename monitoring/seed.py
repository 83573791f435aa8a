"""Demo data: a day of per-minute rollup history for every predefined metric, so the dashboard's
charts are alive the moment ``seed_demo`` finishes (the collectors add live points after)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from django.db import connection

from adminsite.seed import SeedContext, SeedStep, register_step
from monitoring import storage
from monitoring.metrics import METRICS, PREDEFINED

SAMPLES_PER_MINUTE = 12
HOURS = 24

# name -> (baseline, daily swing, noise) of a believable day.
PROFILES = {
    METRICS.API_LATENCY: (120.0, 60.0, 45.0),
    METRICS.ERROR_RATE: (0.01, 0.008, 0.01),
    METRICS.HTTP_5XX: (0.2, 0.3, 0.4),
    METRICS.EMAIL_SYNC_DURATION: (850.0, 300.0, 250.0),
    METRICS.EMAIL_SYNC_FAILURES: (0.3, 0.4, 0.5),
    METRICS.EMAIL_SYNC_LAG: (20.0, 15.0, 10.0),
    METRICS.CPU: (35.0, 20.0, 8.0),
    METRICS.MEMORY: (58.0, 6.0, 2.0),
    METRICS.DISK: (61.0, 0.5, 0.2),
    METRICS.ACTIVE_USERS: (40.0, 30.0, 5.0),
    METRICS.REVENUE: (4500.0, 3000.0, 2500.0),
    METRICS.CELERY_QUEUE_DEPTH: (3.0, 4.0, 3.0),
}


def history_points(
    name: str, start: datetime, minutes: int, rng: random.Random
) -> list[storage.Point]:
    base, swing, noise = PROFILES[name]
    points = []
    start_micros = int(start.timestamp() * 1_000_000)
    for minute in range(minutes):
        daily = math.sin((minute / 1440.0) * 2 * math.pi - math.pi / 2)
        for sample in range(SAMPLES_PER_MINUTE):
            value = max(0.0, base + swing * daily + rng.gauss(0, noise))
            if name == METRICS.API_LATENCY and rng.random() < 0.03:
                value *= 4  # the slow tail a p95 line is for
            micros = (
                start_micros + minute * 60_000_000 + sample * (60_000_000 // SAMPLES_PER_MINUTE)
            )
            points.append((name, round(value, 3), micros, ""))
    return points


def seed_metric_history(ctx: SeedContext) -> None:
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    start = end - timedelta(hours=HOURS)
    rng = random.Random(6)  # noqa: S311 - demo data, not security
    with connection.cursor() as wrapper:
        wrapper.execute(
            "SELECT DISTINCT name FROM monitoring_rollups WHERE name = ANY(%s) AND minute >= %s",
            [list(PREDEFINED), start],
        )
        present = {row[0] for row in wrapper.fetchall()}
        for name in ctx.progress(list(PREDEFINED), desc="Metric history"):
            if name in present:
                ctx.existing()
                continue
            points = history_points(name, start, HOURS * 60, rng)
            storage.merge_rollups(wrapper.cursor, storage.summarize(points))
            ctx.created()
    ctx.add_note(
        "Monitoring: a day of metric history is backfilled; live points arrive every 15 s."
    )


register_step(
    SeedStep(
        "metrics",
        seed_metric_history,
        order=300,
        help="a day of history for every predefined metric",
    )
)


# name -> the rule's fields. A handful of rules an ops team starts from; thresholds sit above
# the seeded history's normal range, so the demo is quiet until something really breaks.
DEMO_RULES: dict[str, dict] = {
    "High API latency": {
        "description": "The API's average latency over 5 minutes; critical past 1.5 s.",
        "metric": METRICS.API_LATENCY,
        "operator": "gt",
        "threshold": 500,
        "critical_threshold": 1500,
        "recovery_threshold": 400,
        "severity": "warning",
        "aggregation": "avg",
        "window_seconds": 300,
        "pending_seconds": 60,
        "notification_channels": {"email": ["ops@example.com"]},
    },
    "Error rate": {
        "description": "Share of requests answered with an error, over 5 minutes.",
        "metric": METRICS.ERROR_RATE,
        "operator": "gt",
        "threshold": 0.05,
        "critical_threshold": 0.2,
        "severity": "warning",
        "aggregation": "avg",
        "window_seconds": 300,
        "notification_channels": {"email": ["ops@example.com"]},
    },
    "Disk almost full": {
        "description": "Disk use of the application host.",
        "metric": METRICS.DISK,
        "operator": "gte",
        "threshold": 85,
        "critical_threshold": 95,
        "recovery_threshold": 80,
        "severity": "warning",
        "aggregation": "last",
        "window_seconds": 120,
        "no_data": "keep",
    },
    "Email sync failures": {
        "description": "Mailbox syncs failing: more than 5 in 10 minutes, for 2 minutes.",
        "metric": METRICS.EMAIL_SYNC_FAILURES,
        "operator": "gt",
        "threshold": 5,
        "severity": "warning",
        "aggregation": "sum",
        "window_seconds": 600,
        "pending_seconds": 120,
        "renotify_seconds": 3600,
    },
    "Celery queue backlog": {
        "description": "Tasks waiting for a worker.",
        "metric": METRICS.CELERY_QUEUE_DEPTH,
        "operator": "gt",
        "threshold": 100,
        "critical_threshold": 1000,
        "severity": "warning",
        "aggregation": "max",
        "window_seconds": 120,
    },
}


def seed_alert_rules(ctx: SeedContext) -> None:
    from monitoring import services
    from monitoring.models import AlertRule

    existing = set(AlertRule.objects.filter(name__in=DEMO_RULES).values_list("name", flat=True))
    for name, fields in DEMO_RULES.items():
        if name in existing:
            ctx.existing()
            continue
        services.create_rule(actor="system", data={"name": name, **fields})
        ctx.created()
    # Made by a migration in every install; here too, in case it was deleted.
    if not AlertRule.objects.filter(name=JOB_RULE["name"]).exists():
        services.create_rule(actor="system", data=JOB_RULE)
        ctx.created()
    ctx.add_note(
        "Alerting: demo rules at /admin/monitoring/rules/; "
        "track_metric(METRICS.DISK, 97) fires the disk rule within 10 s."
    )


# The rule of migration 0005: three failures in a row of any one background job.
JOB_RULE = {
    "name": "Background job failing",
    "description": "A background job failed three times in a row; one alert per job.",
    "metric": "job_consecutive_failures",
    "operator": "gte",
    "threshold": 3,
    "severity": "critical",
    "aggregation": "last",
    "window_seconds": 3600,
    "no_data": "keep",
    "auto_resolve": True,
}


register_step(
    SeedStep(
        "alert_rules",
        seed_alert_rules,
        order=310,
        help="demo alert rules (API latency, error rate, disk, email sync failures)",
    )
)
