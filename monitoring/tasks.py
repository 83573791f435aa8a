"""Celery entry points for monitoring: the buffer flush, partition upkeep and the collectors."""

from __future__ import annotations

from datetime import timedelta

import redis
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from monitoring import collectors, storage
from monitoring.metrics import flush_buffer, stream_key


@shared_task(name="monitoring.flush_metrics", soft_time_limit=50, time_limit=60, ignore_result=True)
def flush_metrics() -> int:
    """Drain the Redis stream of points into PostgreSQL (exactly once; see storage.flush_stream)."""
    flush_buffer()  # this worker's own points first
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return storage.flush_stream(client, stream_key())


@shared_task(
    name="monitoring.maintain_partitions", soft_time_limit=120, time_limit=180, ignore_result=True
)
def maintain_partitions() -> None:
    storage.maintain_partitions()


@shared_task(
    name="monitoring.purge_rollups", soft_time_limit=240, time_limit=300, ignore_result=True
)
def purge_rollups() -> int:
    cutoff = timezone.now() - timedelta(days=settings.METRICS_ROLLUP_RETENTION_DAYS)
    return storage.purge_rollups(before=cutoff)


@shared_task(
    name="monitoring.collect_system", soft_time_limit=10, time_limit=20, ignore_result=True
)
def collect_system() -> None:
    collectors.collect_system()


@shared_task(
    name="monitoring.collect_queue_depth", soft_time_limit=10, time_limit=20, ignore_result=True
)
def collect_queue_depth() -> None:
    collectors.collect_queue_depth()


@shared_task(
    name="monitoring.collect_active_users", soft_time_limit=10, time_limit=20, ignore_result=True
)
def collect_active_users() -> None:
    collectors.collect_active_users()
