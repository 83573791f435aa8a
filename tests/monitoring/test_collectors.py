"""The built-in collectors, the flush task in a real Celery worker, and partition retention."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from adminsite import roles
from monitoring import collectors, queries, storage, tasks
from monitoring.metrics import METRICS, default_buffer, flush_buffer, track_metric
from tests.factories import StaffFactory
from tests.processes import wait_until


def count(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_points WHERE name = %s", [name])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_system_resources_are_percentages():
    values = collectors.collect_system()
    assert set(values) == {METRICS.CPU, METRICS.MEMORY, METRICS.DISK}
    assert all(0 <= v <= 100 for v in values.values())
    default_buffer()._pending.clear()


@pytest.mark.django_db
def test_active_users_counts_recent_sign_ins():
    recent = StaffFactory(role=roles.OPS)
    old = StaffFactory(role=roles.OPS)
    type(recent).objects.filter(pk=recent.pk).update(
        last_login=timezone.now() - timedelta(minutes=3)
    )
    type(old).objects.filter(pk=old.pk).update(last_login=timezone.now() - timedelta(hours=2))
    assert collectors.active_users() == 1


@pytest.mark.django_db
def test_queue_depth_reads_the_celery_queue(redis_server, settings):
    import redis

    # A Redis of its own: the test run's Celery worker would consume what is pushed onto the
    # shared queue (and choke on it).
    settings.REDIS_URL = redis_server.url
    client = redis.Redis.from_url(redis_server.url)
    client.rpush(f"{settings.REDIS_KEY_PREFIX}celery", "a", "b", "c")
    assert collectors.queue_depth() == 3
    check = next(c for c in queries.health_checks() if c["name"] == "queue")
    assert (check["health"], check["detail"]) == ("healthy", "3 tasks waiting")


@pytest.mark.django_db(transaction=True)
def test_points_reach_the_database_through_the_worker_flush(celery_worker):
    import redis
    from django.conf import settings

    from monitoring.metrics import stream_key

    redis.Redis.from_url(settings.REDIS_URL).delete(stream_key())  # this test run's own key
    for i in range(25):
        track_metric("worker.flush", i, tags={"case": "celery"})
    flush_buffer()
    tasks.flush_metrics.delay()
    wait_until(
        lambda: count("worker.flush") == 25, timeout=30, what="25 points flushed by the worker"
    )
    tasks.collect_queue_depth.delay()
    # The collector's point waits in the worker's buffer (sent within half a second by its
    # thread); flushes run, as beat would run them, until it has arrived.
    flushed_at = [0.0]

    def queue_depth_stored() -> bool:
        if time.monotonic() - flushed_at[0] > 1:
            tasks.flush_metrics.delay()
            flushed_at[0] = time.monotonic()
        return count(METRICS.CELERY_QUEUE_DEPTH) >= 1

    wait_until(queue_depth_stored, timeout=30, what="queue depth point")
    assert count("worker.flush") == 25


@pytest.mark.django_db
def test_partitions_past_the_retention_are_dropped():
    today = datetime.now(UTC).date()
    old = today - timedelta(days=20)
    with connection.cursor() as cursor:
        storage._create_partition(cursor, old)
    assert old in storage.existing_partitions()
    report = storage.maintain_partitions(today=today)
    assert report.dropped == [old]
    assert old not in storage.existing_partitions()
    assert min(storage.existing_partitions()) == today - timedelta(days=14)
    assert max(storage.existing_partitions()) >= today + timedelta(days=3)
