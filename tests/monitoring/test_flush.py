"""The flush from the Redis stream into PostgreSQL: exactly once, even when killed mid-flush."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis
from django.db import connection

from monitoring import storage
from monitoring.metrics import MetricBuffer, encode_point
from tests.processes import BASE_DIR, wait_until, worker_database_url


def stats(name: str) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT value) FROM monitoring_points WHERE name = %s", [name]
        )
        return cursor.fetchone()


def push(client, key: str, name: str, count: int, start: int = 0) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for i in range(start, start + count):
        pipe.xadd(key, {"p": encode_point(name, float(i), now, '{"n":"x"}')})
        if i % 5000 == 0:
            pipe.execute()
    pipe.execute()


@pytest.mark.django_db
def test_flush_writes_each_point_once_and_trims_the_stream(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    buffer = MetricBuffer(redis_url=redis_server.url, key="t:flush")
    for i in range(2500):
        buffer.track("flush.once", i, tags={"host": "a"})
    buffer.send()
    assert storage.flush_stream(client, "t:flush", batch=2) == 2500  # 5 entries of 500
    assert stats("flush.once") == (2500, 2500)
    assert client.xlen("t:flush") == 0
    assert storage.flush_stream(client, "t:flush") == 0
    assert stats("flush.once") == (2500, 2500)
    from monitoring.models import MetricRollup

    assert (
        sum(MetricRollup.objects.filter(name="flush.once").values_list("count", flat=True)) == 2500
    )


@pytest.mark.django_db
def test_points_that_are_not_ours_are_skipped(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.xadd("t:odd", {"x": "1"})
    client.xadd("t:odd", {"p": "no separators"})
    client.xadd("t:odd", {"p": encode_point("odd.ok", 1.0, time.time(), "")})
    assert storage.flush_stream(client, "t:odd") == 1


FLUSHER = """
import redis
from monitoring import storage
client = redis.Redis.from_url({url!r})
while storage.flush_stream(client, "t:kill", batch=1000):
    pass
"""


KILLED_APP = "adminsite-flush-kill-test"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.6])
def test_a_flusher_killed_mid_flush_loses_and_doubles_nothing(redis_server, fraction):
    client = redis.Redis.from_url(redis_server.url)
    total = 100_000
    # A name per case: the raw table is not Django's, so a transactional test leaves its rows.
    name = f"flush.kill.{int(fraction * 10)}"
    push(client, "t:kill", name, total)
    # Named connections: the run's Celery worker may hold sessions on the same database.
    env = {
        **os.environ,
        "DATABASE_URL": f"{worker_database_url()}{'&' if '?' in worker_database_url() else '?'}application_name={KILLED_APP}",
        "REDIS_URL": redis_server.url,
    }
    proc = subprocess.Popen(  # noqa: S603 - fixed command line
        [sys.executable, "manage.py", "shell", "-c", FLUSHER.format(url=redis_server.url)],
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,
    )
    try:
        # Killed as soon as that share of the points is committed: mid-way through a later batch,
        # or between a commit and the stream trim that follows it.
        deadline = time.monotonic() + 60
        while stats(name)[0] <= fraction * total and time.monotonic() < deadline:
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert stats(name)[0] < total, "the flusher finished before it was killed"
    # What the killed flusher held is released with its connection; the next flush finishes.
    wait_until(lambda: _no_other_session(), timeout=10, what="killed session gone")
    storage.flush_stream(client, "t:kill")
    assert stats(name) == (total, total)


def _no_other_session() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s",
            [KILLED_APP],
        )
        return cursor.fetchone()[0] == 0


@pytest.mark.django_db
def test_partitions_are_shown_and_repaired():
    from django.core.management import call_command

    today = datetime.now(UTC).date()
    report = storage.maintain_partitions(today=today)
    assert not storage.maintain_partitions(today=today, repair=False).missing
    days = storage.existing_partitions()
    assert today in days
    assert min(days) >= today - __import__("datetime").timedelta(days=14)
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE "{storage.partition_name(today)}"')
    assert storage.maintain_partitions(today=today, repair=False).missing == [today]
    from io import StringIO

    out = StringIO()
    call_command("metrics_partitions", "--repair", stdout=out)
    assert "Created 1" in out.getvalue()
    assert report.existing is not None
