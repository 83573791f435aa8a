#!/usr/bin/env python
"""Benchmark: the staff dashboard (GET /admin/) as a signed-in superuser.

Runs against the development database (the embedded PostgreSQL under .devdata/, or
DATABASE_URL when set) with whatever data it holds, through Django's test client in this
process: the figures are server time (middleware, view, queries, template), no network.
Creates the superuser ``bench-admin`` (no usable password) when it is missing.

    .venv/bin/python bench/bench_dashboard.py [--requests 200] [--warmup 10]

Prints the CPU count, median / p95 / max time per request in ms, and how many SQL queries one
request runs (``--show-queries`` lists them). A benchmark, not a test: it exits 0 whatever the figures; it exits 1 only when the
page does not answer 200, since then there is nothing to measure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from common import percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

URL = "/admin/"
USERNAME = "bench-admin"


def bench_user():
    user_model = get_user_model()
    user = user_model.objects.filter(username=USERNAME).first()
    if user is None:
        # Created directly rather than through services.create_staff_user: a superuser needs
        # no role group, and this account exists only for benchmarking.
        user = user_model.objects.create_superuser(
            USERNAME, f"{USERNAME}@example.invalid", password=None
        )
        print(f"created superuser {USERNAME!r}")
    return user


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests (default 200)")
    parser.add_argument(
        "--warmup", type=int, default=10, help="untimed requests first (default 10)"
    )
    parser.add_argument("--show-queries", action="store_true", help="print the SQL of one request")
    args = parser.parse_args()
    if args.requests < 1 or args.warmup < 0:
        parser.error("--requests must be at least 1 and --warmup at least 0")

    client = Client()
    client.force_login(bench_user())

    for _ in range(args.warmup):
        client.get(URL)

    with CaptureQueriesContext(connection) as captured:
        response = client.get(URL)
    # Copied now: the context reads Django's query log lazily, which later requests reset.
    queries = [q["sql"] for q in captured.captured_queries]
    if response.status_code != 200:
        print(
            f"GET {URL} answered {response.status_code}, not 200; nothing to measure.",
            file=sys.stderr,
        )
        return 1

    timings_ms = []
    for _ in range(args.requests):
        start = time.perf_counter()
        client.get(URL)
        timings_ms.append((time.perf_counter() - start) * 1000)

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"GET {URL} as superuser, {args.requests} requests after {args.warmup} warm-up, in-process"
    )
    print(f"cpu cores: {os.cpu_count()} (usable by this process: {affinity})")
    print(f"median: {statistics.median(timings_ms):.1f} ms")
    print(f"p95:    {percentile(timings_ms, 0.95):.1f} ms")
    print(f"max:    {max(timings_ms):.1f} ms")
    print(f"sql queries per request: {len(queries)}")
    if args.show_queries:
        for sql in queries:
            print(f"  {sql}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
