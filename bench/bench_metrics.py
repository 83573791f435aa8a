#!/usr/bin/env python
"""Benchmark: metrics ingestion and the monitoring dashboard's data.

Runs in a database of its own, ``bench_metrics``, on the development PostgreSQL (the embedded
server under .devdata/, or the server of DATABASE_URL), migrated on first use, and a Redis
stream of its own on the development Redis; nothing else is touched.

    .venv/bin/python bench/bench_metrics.py [--calls 200000] [--e2e 300000] [--points 1000000]
        [--only track|ingestion|dashboard]

Prints:
  1. track_metric calls per second in this one process (validation, encoding, the pipelined
     XADD to Redis included);
  2. end-to-end ingestion, points per second from the Redis stream into the partitioned table
     (XRANGE, decode, binary COPY, rollups, cursor, trim), next to a raw psycopg binary COPY of
     the same rows into the same table in the same run, and their ratio;
  3. the dashboard's data for all its charts (every predefined metric, each range) with
     ``--points`` raw points loaded (plus their rollups): median and max ms.
A benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
BENCH_DB = "bench_metrics"


def prepare_environment() -> None:
    """Point the settings at the bench database (created when missing) and a Redis prefix."""
    import psycopg

    from adminsite import devservices

    base = os.environ.get("DATABASE_URL") or devservices.ensure_postgres()
    os.environ.setdefault("REDIS_URL", os.environ.get("REDIS_URL") or devservices.ensure_redis())
    parts = urlsplit(base)
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{BENCH_DB}"))
    os.environ["REDIS_KEY_PREFIX"] = "bench_metrics:"


def bench_track(calls: int) -> None:
    from monitoring.metrics import MetricBuffer, decode_entry

    buffer = MetricBuffer(key="bench_metrics:track")
    client = buffer._redis()
    client.delete(buffer.key)
    tags = {"route": "api-me"}
    started = time.perf_counter()
    for i in range(calls):
        buffer.track("api_latency_ms", i % 500, tags=tags)
    buffer.send()
    elapsed = time.perf_counter() - started
    stored = sum(
        len(decode_entry(fields[b"p"].decode())) for _id, fields in client.xrange(buffer.key)
    )
    client.delete(buffer.key)
    print(
        f"track_metric: {calls / elapsed:,.0f} calls/s in one process "
        f"({elapsed * 1e6 / calls:.1f} µs per call; {stored:,} points in Redis, {sum(buffer.dropped.values())} dropped)"
    )


def bench_ingestion(count: int) -> None:
    from django.db import connection

    from monitoring import storage
    from monitoring.metrics import MetricBuffer, decode_entry

    key = "bench_metrics:e2e"
    buffer = MetricBuffer(key=key)
    client = buffer._redis()
    client.delete(key)
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_flush_cursor WHERE stream = %s", [key])
    routes = [{"route": f"r{i}"} for i in range(8)]
    for i in range(count):
        buffer.track("bench.e2e", float(i % 1000), tags=routes[i % 8])
    buffer.send()
    rows = [point for _id, raw in client.xrange(key) for point in decode_entry(raw[b"p"].decode())]

    started = time.perf_counter()
    flushed = storage.flush_stream(client, key)
    e2e = time.perf_counter() - started

    # The baseline: psycopg's binary COPY of the same rows, values pre-encoded in the columns'
    # wire formats exactly as the pipeline sends them (int8 microseconds since 2000-01-01 for
    # timestamptz, version byte + JSON for jsonb), so the ratio is the pipeline's own overhead.
    prepared = [
        (
            micros - 946_684_800_000_000,
            name + ".raw",
            value,
            b"\x01" + tags.encode() if tags else None,
        )
        for name, value, micros, tags in rows
    ]
    started = time.perf_counter()
    with (
        connection.cursor() as wrapper,
        wrapper.cursor.copy(
            "COPY monitoring_points (time, name, value, tags) FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["int8", "text", "float8", "bytea"])
        for row in prepared:
            copy.write_row(row)
    raw = time.perf_counter() - started
    client.delete(key)
    e2e_rate, raw_rate = flushed / e2e, len(rows) / raw
    print(
        f"ingestion end to end (stream -> COPY + rollups): {e2e_rate:,.0f} points/s ({flushed:,} points, {e2e:.2f} s)\n"
        f"raw psycopg binary COPY of the same rows:      {raw_rate:,.0f} points/s ({len(rows):,} rows, {raw:.2f} s)\n"
        f"ratio end to end / raw COPY: {e2e_rate / raw_rate:.2f}"
    )


def load_points(target: int) -> None:
    """Top the raw table up to ``target`` points of the predefined metrics over the last 13 days
    (12 metrics x 4 routes, in time order), with their rollups, in SQL."""
    from django.db import connection

    from monitoring import storage
    from monitoring.metrics import PREDEFINED

    storage.maintain_partitions()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM monitoring_points WHERE name = ANY(%s)", [list(PREDEFINED)]
        )
        have = cursor.fetchone()[0]
        missing = target - have
        if missing <= 0:
            print(f"raw table holds {have:,} predefined-metric points already")
            return
        print(f"loading {missing:,} raw points (have {have:,}) ...", flush=True)
        started = time.perf_counter()
        names = list(PREDEFINED)
        chunk = 2_000_000
        span_seconds = 13 * 86400
        done = 0
        while done < missing:
            n = min(chunk, missing - done)
            cursor.execute(
                """INSERT INTO monitoring_points (time, name, value, tags)
                   SELECT now() - make_interval(secs => %s * (1 - (g + %s)::float8 / %s)),
                          (%s::text[])[1 + g %% 12], random() * 100,
                          jsonb_build_object('route', 'r' || (g %% 4))
                   FROM generate_series(0, %s - 1) AS g""",
                [span_seconds, done, missing, names, n],
            )
            done += n
            print(f"  {done:,} / {missing:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        cursor.execute("DELETE FROM monitoring_rollups WHERE name = ANY(%s)", [names])
        cursor.execute(
            """INSERT INTO monitoring_rollups
                 (name, tags_key, tags, minute, count, sum, min, max, last, last_at, p95, hist)
               SELECT name, tags::text, tags, date_trunc('minute', time), count(*), sum(value),
                      min(value), max(value), max(value), max(time),
                      percentile_cont(0.95) WITHIN GROUP (ORDER BY value), '{}'::jsonb
               FROM monitoring_points WHERE name = ANY(%s)
               GROUP BY name, tags, date_trunc('minute', time)""",
            [names],
        )
        cursor.execute("DELETE FROM monitoring_rollups_hourly WHERE name = ANY(%s)", [names])
        cursor.execute(
            """INSERT INTO monitoring_rollups_hourly
                 (name, tags_key, tags, hour, count, sum, min, max, last, last_at, p95, hist)
               SELECT name, tags_key, (array_agg(tags))[1], date_trunc('hour', minute),
                      sum(count), sum(sum), min(min), max(max),
                      (array_agg(last ORDER BY last_at DESC))[1], max(last_at), max(p95),
                      '{}'::jsonb
               FROM monitoring_rollups WHERE name = ANY(%s)
               GROUP BY name, tags_key, date_trunc('hour', minute)""",
            [names],
        )
        cursor.execute("ANALYZE monitoring_points")
        cursor.execute("ANALYZE monitoring_rollups")
        cursor.execute("ANALYZE monitoring_rollups_hourly")
        print(f"loaded in {time.perf_counter() - started:.0f} s")


def bench_dashboard(repeats: int) -> None:
    from django.db import connection

    from monitoring import queries

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_points")
        raw = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM monitoring_rollups")
        rollups = cursor.fetchone()[0]
    print(f"dashboard data with {raw:,} raw points and {rollups:,} rollup rows:")
    for key, rng in queries.RANGES.items():
        queries.dashboard_charts(rng)  # warm
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            charts = queries.dashboard_charts(rng)
            times.append((time.perf_counter() - started) * 1000)
        buckets = max(len(c["t"]) for c in charts)
        print(
            f"  range {key:>3}: median {statistics.median(times):6.1f} ms, max {max(times):6.1f} ms"
            f" ({len(charts)} charts, up to {buckets} buckets each)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--calls", type=int, default=200_000, help="track_metric calls (default 200000)"
    )
    parser.add_argument(
        "--e2e", type=int, default=300_000, help="points through the stream (default 300000)"
    )
    parser.add_argument(
        "--points",
        type=int,
        default=1_000_000,
        help="raw points for the dashboard (default 1000000)",
    )
    parser.add_argument(
        "--repeats", type=int, default=20, help="dashboard timings per range (default 20)"
    )
    parser.add_argument(
        "--only",
        choices=["track", "ingestion", "dashboard"],
        help="run only this part (default: all three)",
    )
    args = parser.parse_args()
    for flag in ("calls", "e2e", "points", "repeats"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")

    prepare_environment()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"CPUs: {os.cpu_count()}; database {BENCH_DB}")
    if args.only in (None, "track"):
        bench_track(args.calls)
    if args.only in (None, "ingestion"):
        bench_ingestion(args.e2e)
    if args.only in (None, "dashboard"):
        load_points(args.points)
        bench_dashboard(args.repeats)


if __name__ == "__main__":
    main()
