"""track_metric: validation, the Redis buffer, the database fallback and the drop counter."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.db import connection

from monitoring import queries, storage
from monitoring.metrics import (
    METRICS,
    PREDEFINED,
    InvalidPointError,
    MetricBuffer,
    decode_entry,
    encode_tags,
    track_metric,
)

pytestmark = pytest.mark.django_db


def raw_count(name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_points WHERE name = %s", [name])
        return cursor.fetchone()[0]


def test_predefined_metrics_have_units():
    assert PREDEFINED[METRICS.API_LATENCY][0] == "ms"
    assert len(PREDEFINED) == 12
    assert all(unit for unit, _label in PREDEFINED.values())


@pytest.mark.parametrize(
    ("name", "value", "tags", "at", "reason"),
    [
        ("API_Latency", 1, None, None, "invalid_name"),
        ("x" * 101, 1, None, None, "invalid_name"),
        ("bad name", 1, None, None, "invalid_name"),
        (None, 1, None, None, "invalid_name"),
        ("ok", math.nan, None, None, "invalid_value"),
        ("ok", math.inf, None, None, "invalid_value"),
        ("ok", "12", None, None, "invalid_value"),
        ("ok", True, None, None, "invalid_value"),
        ("ok", 1, {"a": {"nested": "x"}}, None, "invalid_tags"),
        ("ok", 1, {"a": 5}, None, "invalid_tags"),
        ("ok", 1, ["a"], None, "invalid_tags"),
        ("ok", 1, {f"k{i}": "v" for i in range(17)}, None, "invalid_tags"),
        ("ok", 1, {"k": "v" * 201}, None, "invalid_tags"),
        ("ok", 1, None, datetime.now(UTC) + timedelta(hours=1), "invalid_time"),
        ("ok", 1, None, datetime.now(UTC) - timedelta(days=30), "invalid_time"),
        ("ok", 1, None, datetime(2026, 1, 1), "invalid_time"),  # noqa: DTZ001 - naive on purpose
    ],
)
def test_bad_points_are_dropped_and_counted_never_raised(
    redis_server, name, value, tags, at, reason
):
    buffer = MetricBuffer(redis_url=redis_server.url, key="t:points")
    assert buffer.track(name, value, tags=tags, at=at) is False
    assert buffer.dropped[reason] == 1
    buffer.send()
    assert redis.Redis.from_url(redis_server.url).xlen("t:points") == 0


def test_tags_are_canonical_json():
    assert encode_tags({"b": "2", "a": "1"}) == '{"a":"1","b":"2"}'
    assert encode_tags({}) == encode_tags(None) == ""
    with pytest.raises(InvalidPointError) as excinfo:
        encode_tags({"a": 1})
    assert excinfo.value.field == "tags"


def test_points_go_to_the_stream_in_batches(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    buffer = MetricBuffer(redis_url=redis_server.url, key="t:points")
    at = datetime.now(UTC) - timedelta(minutes=1)
    for i in range(10):
        assert buffer.track("orders.placed", i, tags={"shop": "eu"}, at=at)
    buffer.send()
    entries = client.xrange("t:points")
    assert len(entries) == 1  # one entry per batch
    points = decode_entry(entries[0][1][b"p"].decode())
    assert len(points) == 10
    name, value, micros, tags = points[3]
    assert (name, value, tags) == ("orders.placed", 3.0, '{"shop":"eu"}')
    assert micros == int(at.timestamp() * 1_000_000)


def test_redis_stopped_mid_run_points_arrive_through_the_database(redis_server):
    buffer = MetricBuffer(redis_url=redis_server.url, key="t:points")
    for i in range(5):
        buffer.track("fallback.test", i)
    buffer.send()
    assert redis.Redis.from_url(redis_server.url).xlen("t:points") == 1
    redis_server.stop()
    for i in range(7):
        assert buffer.track("fallback.test", i) is True  # no exception reaches the caller
    buffer.send()
    assert buffer.fallback_writes == 7
    assert raw_count("fallback.test") == 7
    assert not buffer.dropped


@pytest.mark.django_db(databases=[])
def test_redis_and_database_down_points_are_counted_as_dropped(redis_server):
    # No database access is allowed in this test: the fallback's write fails like a dead server.
    buffer = MetricBuffer(redis_url=redis_server.url, key="t:points")
    redis_server.stop()
    for i in range(3):
        assert buffer.track("lost.points", i) is True
    assert buffer.send() == 0
    assert buffer.dropped["unavailable"] == 3


def test_module_level_track_metric_never_raises_on_garbage():
    assert track_metric(object(), object(), tags=object(), at=object()) is False


def test_import_is_cheap_and_touches_no_service():
    code = (
        "import sys, time; t = time.perf_counter(); import monitoring.metrics;"
        " print(time.perf_counter() - t); print('django.db' in sys.modules, 'redis' in sys.modules)"
    )
    out = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert float(out[0]) < 0.5
    assert out[1:] == ["False", "False"]


def test_write_points_fills_rollups(django_assert_max_num_queries):
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    base = int(minute.timestamp() * 1_000_000)
    points = [("roll.test", float(v), base + v * 1000, "") for v in range(1, 101)]
    with django_assert_max_num_queries(6):
        storage.write_points(points)
    storage.write_points([("roll.test", 500.0, base + 200_000, "")])
    from monitoring.models import MetricRollup

    row = MetricRollup.objects.get(name="roll.test", minute=minute)
    assert (row.count, row.min, row.max, row.last) == (101, 1.0, 500.0, 500.0)
    assert row.sum == sum(range(1, 101)) + 500
    assert 90 <= row.p95 <= 100  # true p95 is 96: within the histogram's 5 %


def test_write_points_fills_the_hourly_rollups_that_week_long_charts_read():
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    base = int(hour.timestamp() * 1_000_000)
    minute = 60_000_000
    # Two minutes of one hour in one flush, then a third minute of the same hour later.
    storage.write_points(
        [("hourly.test", float(v), base + 5 * minute + v, "") for v in range(1, 51)]
        + [("hourly.test", float(v), base + 6 * minute + v, "") for v in range(51, 101)]
    )
    storage.write_points([("hourly.test", 7.0, base + 59 * minute, "")])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count, sum, min, max, last, p95 FROM monitoring_rollups_hourly "
            "WHERE name = 'hourly.test' AND hour = %s",
            [hour],
        )
        count, total, low, high, last, p95 = cursor.fetchone()
    assert (count, low, high, last) == (101, 1.0, 100.0, 7.0)
    assert total == sum(range(1, 101)) + 7
    assert 90 <= p95 <= 100  # merged histograms of the three minutes: true p95 is 96

    week = queries.RANGES["7d"]
    data = queries.series(["hourly.test"], week)["hourly.test"]
    assert data["t"] == [hour.isoformat()] and data["count"] == [101]
    assert data["avg"] == [round((sum(range(1, 101)) + 7) / 101, 4)]


def test_purging_rollups_drops_old_minutes_and_hours_alike():
    old = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=400)
    storage.write_points([("purge.test", 1.0, int(old.timestamp() * 1_000_000), "")])
    assert storage.purge_rollups(before=old + timedelta(days=1)) >= 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM monitoring_rollups WHERE name = 'purge.test'),"
            " (SELECT count(*) FROM monitoring_rollups_hourly WHERE name = 'purge.test')"
        )
        assert cursor.fetchone() == (0, 0)


def test_stream_entries_keep_every_value_and_time_exactly():
    from monitoring.metrics import encode_entry

    now = int(datetime.now(UTC).timestamp() * 1_000_000)
    values = [0.1, -2.5, 0.0, 1e-300, 1.7976931348623157e308, 123456789.123, -0.0, 7.0]
    points = [
        (name, value, now - i * 997, tags)
        for i, value in enumerate(values)
        for name, tags in [
            ("a.b", ""),
            ("a.b", '{"route":"x|y"}'),
            ("c_1", '{"city":"Zürich"}'),
        ]
    ]
    decoded = decode_entry(encode_entry(points))
    # Grouped by series, each series in the order its points were recorded.
    assert sorted(decoded, key=lambda p: (p[0], p[3])) == sorted(points, key=lambda p: (p[0], p[3]))
    assert [repr(p[1]) for p in decoded if p[3] == ""] == [repr(v) for v in values]


def test_entries_in_the_per_point_text_format_still_decode():
    from monitoring.metrics import encode_point

    raw = "\n".join(
        [encode_point("old.format", 1.5, 1_700_000_000.25, ""), encode_point("x", 2.0, 1.0, "{}")]
    )
    assert decode_entry(raw) == [
        ("old.format", 1.5, 1_700_000_000_250_000, ""),
        ("x", 2.0, 1_000_000, "{}"),
    ]
