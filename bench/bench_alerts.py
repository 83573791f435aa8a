#!/usr/bin/env python
"""Benchmark: one alert evaluation cycle over 1,000 enabled rules and 10,000,000 points.

Runs in a database of its own, ``bench_alerts``, on the development PostgreSQL (the embedded
server under .devdata/, or the server of DATABASE_URL), migrated on first use; nothing else is
touched.

    .venv/bin/python bench/bench_alerts.py [--points 10000000] [--rules 1000] [--cycles 10]

The data: ``--rules`` metrics (``bench.m0000`` ...) with 10 tag sets each (``host=h0..h9``),
``--points`` raw points spread evenly over the 9 minutes before a reference time, written
with binary COPY in time order, and their per-minute rollups (count, sum, min, max, last,
histogram) built from them in SQL. Every point lies inside the window of its metric's rule.
The rules (one per metric) cycle through the aggregations last, avg, min, max, sum, count and
p95 over a 10-minute window; one in twenty reads a 30 s window of raw points instead; one in
fifty breaches, so the first cycle opens alerts and the later ones carry them.

Prints the data loaded, then the time of each evaluation cycle at the reference time: the
first (which opens the alerts) and the median and max of the steady cycles after it. A
benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
BENCH_DB = "bench_alerts"
TAG_SETS = 10
SPAN_SECONDS = 540  # the points cover the 9 minutes before the reference time
AGGREGATIONS = ["last", "avg", "min", "max", "sum", "count", "p95"]


def prepare_environment() -> None:
    """Point the settings at the bench database (created when missing)."""
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
    os.environ["REDIS_KEY_PREFIX"] = "bench_alerts:"


def load(points: int, rules: int) -> datetime:
    """Empty the bench tables and load the points, rollups and rules; returns the reference
    time the data ends at."""
    from django.db import connection

    from monitoring import storage

    reference = datetime.now(UTC).replace(microsecond=0)
    storage.maintain_partitions()
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        cursor.execute(
            "TRUNCATE monitoring_points, monitoring_rollups, monitoring_delivery_attempts,"
            " monitoring_notifications, monitoring_alert_events, monitoring_alerts,"
            " monitoring_silences, alert_rules"
        )
        print(f"loading {points:,} raw points with binary COPY ...", flush=True)
        started = time.perf_counter()
        end_micros = int(reference.timestamp() * 1_000_000)
        step = SPAN_SECONDS * 1_000_000 / points
        tags = [b"\x01" + f'{{"host":"h{k}"}}'.encode() for k in range(TAG_SETS)]
        names = [f"bench.m{i:04d}" for i in range(rules)]
        with cursor.copy(storage.COPY_SQL) as copy:
            copy.set_types(storage.COPY_TYPES)
            write = copy.write_row
            epoch = storage.PG_EPOCH_MICROS
            for g in range(points):
                micros = end_micros - int((points - 1 - g) * step)
                metric = g % rules
                host = (g // rules) % TAG_SETS
                # Values 0-100, drifting per metric; every round of points covers each pair.
                value = float((g * 7919 + metric * 31) % 10_000) / 100.0
                write((micros - epoch, names[metric], value, tags[host]))
                if g and g % 2_000_000 == 0:
                    print(f"  {g:,} ({time.perf_counter() - started:.0f} s)", flush=True)
        copied = time.perf_counter() - started
        print(f"  COPY done in {copied:.0f} s ({points / copied:,.0f} points/s)", flush=True)

        started = time.perf_counter()
        cursor.execute(
            r"""INSERT INTO monitoring_rollups
                  (name, tags_key, tags, minute, count, sum, min, max, last, last_at, p95, hist)
                SELECT name, tags_key, tags_key::jsonb, minute, sum(n), sum(s), min(lo), max(hi),
                       (array_agg(last_value ORDER BY last_at DESC))[1], max(last_at), max(hi),
                       jsonb_object_agg(bucket, n)
                FROM (
                    SELECT name, '{"host":"' || (tags->>'host') || '"}' AS tags_key,
                           date_trunc('minute', time) AS minute,
                           CASE WHEN value <= 0 THEN 'z'
                                ELSE floor(ln(value) / ln(1.1))::int::text END AS bucket,
                           count(*) AS n, sum(value) AS s, min(value) AS lo, max(value) AS hi,
                           (array_agg(value ORDER BY time DESC))[1] AS last_value,
                           max(time) AS last_at
                    FROM monitoring_points
                    GROUP BY 1, 2, 3, 4
                ) AS buckets
                GROUP BY name, tags_key, minute"""
        )
        print(f"  rollups built in {time.perf_counter() - started:.0f} s", flush=True)

        rows = []
        for i, name in enumerate(names):
            raw = i % 20 == 0
            breaching = i % 50 == 0
            aggregation = "avg" if raw else AGGREGATIONS[i % len(AGGREGATIONS)]
            # Thresholds far above the data except for one rule in fifty, which breaches.
            if aggregation in ("sum", "count"):
                threshold = 0.0 if breaching else 1e12
            else:
                threshold = 1.0 if breaching else 1000.0
            rows.append(
                (f"Bench rule {i:04d}", name, "gt", threshold, "warning", aggregation,
                 30 if raw else 600)
            )  # fmt: skip
        cursor.executemany(
            """INSERT INTO alert_rules (name, metric, operator, threshold, severity,
                   notification_channels, enabled, aggregation, window_seconds)
               VALUES (%s, %s, %s, %s, %s, '{}'::jsonb, true, %s, %s)""",
            rows,
        )
        cursor.execute("ANALYZE monitoring_points")
        cursor.execute("ANALYZE monitoring_rollups")
        cursor.execute("ANALYZE alert_rules")
        cursor.execute("SELECT count(*) FROM monitoring_rollups")
        rollups = cursor.fetchone()[0]
    print(f"loaded: {points:,} points, {rollups:,} rollup rows, {rules:,} enabled rules")
    return reference


def reuse() -> datetime:
    """The last run's data, its alerts cleared; the reference time its points end at."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE monitoring_delivery_attempts, monitoring_notifications,"
            " monitoring_alert_events, monitoring_alerts"
        )
        cursor.execute("SELECT count(*), max(time) FROM monitoring_points")
        points, newest = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM alert_rules WHERE enabled")
        rules = cursor.fetchone()[0]
    if newest is None:
        raise SystemExit("No data to reuse: run without --reuse first.")
    print(f"reusing: {points:,} points, {rules:,} enabled rules")
    return newest.replace(microsecond=0) + timedelta(seconds=1)


def bench(reference: datetime, cycles: int) -> None:
    from monitoring import alerts

    times, cpu = [], []
    for cycle in range(cycles + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        report = alerts.evaluate(now=reference + timedelta(seconds=cycle))
        elapsed = (time.perf_counter() - started) * 1000
        times.append(elapsed)
        cpu.append((time.process_time() - cpu_started) * 1000)
        if cycle == 0:
            print(
                f"first cycle: {elapsed:7.1f} ms ({report.rules} rules, {report.groups:,} tag sets,"
                f" {report.opened} alerts opened, {len(report.errors)} errors)"
            )
    steady = times[1:]
    print(
        f"steady cycles ({cycles}): median {statistics.median(steady):7.1f} ms,"
        f" max {max(steady):7.1f} ms  (target: under 1000 ms per cycle);"
        f" this process's CPU {statistics.median(cpu[1:]):.0f} ms per cycle, the rest is"
        " PostgreSQL"
    )
    # The machine may be shared: the figures above are wall time under this load.
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000_000, help="default 10000000")
    parser.add_argument("--rules", type=int, default=1000, help="default 1000")
    parser.add_argument("--cycles", type=int, default=10, help="steady cycles (default 10)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the data of the last run (its alerts are cleared) instead of loading again",
    )
    args = parser.parse_args()
    for flag in ("points", "rules", "cycles"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")

    prepare_environment()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"CPUs: {os.cpu_count()}; database {BENCH_DB}")
    reference = reuse() if args.reuse else load(args.points, args.rules)
    bench(reference, args.cycles)


if __name__ == "__main__":
    main()
