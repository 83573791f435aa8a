"""Celery entry points for monitoring: the buffer flush, partition upkeep and the collectors."""

from __future__ import annotations

from datetime import timedelta

import redis
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from monitoring import alerts, collectors, services, storage
from monitoring.metrics import flush_buffer, stream_key


@shared_task(
    name="monitoring.flush_metrics",
    soft_time_limit=50,
    time_limit=60,
    max_retries=0,
    ignore_result=True,
)
def flush_metrics() -> int:
    """Drain the Redis stream of points into PostgreSQL (exactly once; see storage.flush_stream),
    then evaluate the alert rules of the metrics just written, so a breach shows within
    seconds of its track_metric call rather than at the next 10 s evaluation."""
    flush_buffer()  # this worker's own points first
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    written: set[str] = set()
    total = storage.flush_stream(client, stream_key(), written=written)
    if written:
        alerts.evaluate(metrics=written)
    return total


@shared_task(
    name="monitoring.evaluate_alerts",
    soft_time_limit=30,
    time_limit=40,
    max_retries=0,  # periodic: the next run, 10 s later, is the retry
    ignore_result=True,
)
def evaluate_alerts() -> dict:
    """Evaluate every enabled alert rule (beat, every 10 s)."""
    report = alerts.evaluate()
    return {"rules": report.rules, "changes": report.changes, "errors": len(report.errors)}


def retry_delay(retries: int) -> int:
    """Exponential backoff: base, 2 x base, 4 x base ... capped at an hour."""
    return min(settings.ALERT_RETRY_BASE_SECONDS * 2**retries, 3600)


@shared_task(
    bind=True,
    name="monitoring.deliver_notification",
    soft_time_limit=60,
    time_limit=90,
    # Bounded by ALERT_NOTIFICATION_RETRIES in the task (a setting read at run time), which
    # also marks the last try as failed in the delivery log.
    max_retries=None,
    ignore_result=True,
)
def deliver_notification(self, notification_id: int) -> str:
    """Send one alert notification; 5xx, timeouts and connection errors are retried with
    exponential backoff, 4xx are not. Every attempt is stored (services.attempt_delivery)."""
    retries = self.request.retries or 0
    last_try = retries >= settings.ALERT_NOTIFICATION_RETRIES
    outcome = services.attempt_delivery(notification_id=notification_id, last_try=last_try)
    if outcome == "retry":
        raise self.retry(countdown=retry_delay(retries))
    return outcome


@shared_task(
    name="monitoring.maintain_partitions",
    soft_time_limit=120,
    time_limit=180,
    max_retries=0,
    ignore_result=True,
)
def maintain_partitions() -> None:
    storage.maintain_partitions()


@shared_task(
    name="monitoring.purge_rollups",
    soft_time_limit=240,
    time_limit=300,
    max_retries=0,
    ignore_result=True,
)
def purge_rollups() -> int:
    cutoff = timezone.now() - timedelta(days=settings.METRICS_ROLLUP_RETENTION_DAYS)
    return storage.purge_rollups(before=cutoff)


@shared_task(
    name="monitoring.collect_system",
    soft_time_limit=10,
    time_limit=20,
    max_retries=0,
    ignore_result=True,
)
def collect_system() -> None:
    collectors.collect_system()


@shared_task(
    name="monitoring.collect_queue_depth",
    soft_time_limit=10,
    time_limit=20,
    max_retries=0,
    ignore_result=True,
)
def collect_queue_depth() -> None:
    collectors.collect_queue_depth()


@shared_task(
    name="monitoring.collect_active_users",
    soft_time_limit=10,
    time_limit=20,
    max_retries=0,
    ignore_result=True,
)
def collect_active_users() -> None:
    collectors.collect_active_users()
