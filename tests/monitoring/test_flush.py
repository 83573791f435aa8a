"""The flush from the Redis stream into PostgreSQL: exactly once, even when killed mid-flush."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.db import connection

from monitoring import storage
from monitoring.metrics import MetricBuffer, encode_entry, encode_point
from tests.processes import BASE_DIR, wait_until, worker_database_url


def committed(name: str) -> int:
    """Points stored under ``name``: the cheap probe a test polls (no DISTINCT to sort)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_points WHERE name = %s", [name])
        return cursor.fetchone()[0]


def stats(name: str) -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT value) FROM monitoring_points WHERE name = %s", [name]
        )
        return cursor.fetchone()


def push(client, key: str, name: str, count: int, *, per_entry: int = 1) -> None:
    """``count`` points, one per entry in the per-point text format, or ``per_entry`` per
    entry in the column format."""
    now = time.time()
    micros = int(now * 1_000_000)
    pipe = client.pipeline(transaction=False)
    for i in range(0, count, per_entry):
        if per_entry == 1:
            raw = encode_point(name, float(i), now, '{"n":"x"}')
        else:
            raw = encode_entry(
                [(name, float(j), micros, '{"n":"x"}') for j in range(i, min(i + per_entry, count))]
            )
        pipe.xadd(key, {"p": raw})
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
@pytest.mark.parametrize(
    ("fraction", "per_entry"), [(0.0, 1), (0.3, 1), (0.6, 1), (0.3, 5), (0.6, 5)]
)
def test_a_flusher_killed_mid_flush_loses_and_doubles_nothing(redis_server, fraction, per_entry):
    client = redis.Redis.from_url(redis_server.url)
    total = 100_000
    # A name per case: the raw table is not Django's, so a transactional test leaves its rows.
    name = f"flush.kill.{int(fraction * 10)}.{per_entry}"
    # The flusher takes 1,000 entries a transaction: 100 transactions of one point per entry,
    # or 20 of five points per entry.
    push(client, "t:kill", name, total, per_entry=per_entry)
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
        while committed(name) <= fraction * total and time.monotonic() < deadline:
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


@pytest.mark.django_db
def test_flush_reads_both_entry_formats_and_skips_broken_ones(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.xadd("t:mixed", {"p": encode_point("mixed.fmt", 1.0, time.time(), '{"n":"x"}')})
    buffer = MetricBuffer(redis_url=redis_server.url, key="t:mixed")
    for i in range(3):
        buffer.track("mixed.fmt", i + 10, tags={"n": "x"})
    buffer.send()
    client.xadd("t:mixed", {"p": "@1\nmixed.fmt|AAAA|AAAAAAAAAAA=|"})  # 3 time bytes, 8 value
    client.xadd("t:mixed", {"p": "@1\nmixed.fmt|not base64!|x|"})
    client.xadd("t:mixed", {"p": "@1\nmixed.fmt|||"})  # a series without points
    assert storage.flush_stream(client, "t:mixed") == 4
    assert stats("mixed.fmt") == (4, 4)
    assert client.xlen("t:mixed") == 0


@pytest.mark.django_db
def test_rollups_of_a_flush_match_its_points(redis_server):
    """The summaries agree with a point-by-point computation: one series inside a minute, one
    across three (with zero, negative and tied newest values)."""
    import random

    client = redis.Redis.from_url(redis_server.url)
    rng = random.Random(6)
    minute = (int(time.time()) // 60 - 5) * 60_000_000
    points = [
        ("roll.one", rng.uniform(0.5, 900), minute + rng.randrange(60_000_000), "")
        for _ in range(700)
    ]
    points += [
        ("roll.many", rng.choice([0.0, -3.0, rng.uniform(0.001, 5000)]), t, '{"k":"v"}')
        for t in (minute + rng.randrange(180_000_000) for _ in range(1500))
    ]
    newest = max(t for name, _v, t, _tags in points if name == "roll.many")
    points.append(("roll.many", 42.0, newest, '{"k":"v"}'))  # a tie for newest: first one wins
    for start in range(0, len(points), 500):
        client.xadd("t:roll", {"p": encode_entry(points[start : start + 500])})
    assert storage.flush_stream(client, "t:roll") == len(points)

    expected: dict[tuple[str, int], list[tuple[float, int]]] = {}
    for name, value, micros, _tags in points:
        expected.setdefault((name, micros // 60_000_000), []).append((value, micros))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, minute, count, sum, min, max, last, last_at, hist FROM monitoring_rollups"
            " WHERE name IN ('roll.one', 'roll.many')"
        )
        rows = cursor.fetchall()
    assert len(rows) == len(expected) == 4
    for name, start, count, total, low, high, last, last_at, hist in rows:
        group = expected[(name, int(start.timestamp()) // 60)]
        values = [v for v, _t in group]
        first_newest = max(group, key=lambda p: p[1])
        buckets: dict[str, int] = {}
        for v in values:
            b = storage.bucket_of(v)
            key = storage.NONPOSITIVE_BUCKET if b == storage.NONPOSITIVE else str(b)
            buckets[key] = buckets.get(key, 0) + 1
        assert (count, low, high) == (len(values), min(values), max(values))
        assert total == pytest.approx(math.fsum(values), rel=1e-12)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        assert (last, (last_at - epoch) // timedelta(microseconds=1)) == first_newest
        assert (json.loads(hist) if isinstance(hist, str) else hist) == buckets
