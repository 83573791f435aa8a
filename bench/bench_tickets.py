#!/usr/bin/env python
"""Benchmark: support tickets at scale — 1,000,000 tickets and about 5,000,000 comments.

Uses a database of its own, ``adminsite_bench_tickets`` on the same server as the development
database (the embedded PostgreSQL under .devdata/, or the server of DATABASE_URL), so the
development data stays as it is. The first run creates and migrates it and builds the data
set with ``seed_demo --tickets 1000000`` (bulk SQL, several minutes); later runs reuse it.

    .venv/bin/python bench/bench_tickets.py [--requests 50] [--tickets 1000000] [--explain]

Measures server time in this process through Django's test client (middleware, view,
queries, rendering; no network), with production settings (DEBUG off, static files collected,
HTTPS), and prints median / p95 per request with the SQL query count:

* the queue as the queue page loads it (statistics + 50 rows): the default view and others;
  the page itself, /admin/support/, when it exists;
* free-text search over subject, description and comments; the queue page with a search
  (active tickets, and every status), whole and as the htmx fragment typing fetches;
* a ticket with 200 comments: its data (ticket, thread, timeline, customer context), and the
  ticket page /admin/support/<id>/ when it exists;
* the list API page, GET /api/admin/support/tickets, with a Bearer token.

Targets (the tickets issue): queue < 30 ms median and < 60 ms p95, search < 100 ms, ticket
page < 50 ms, list API < 30 ms. A benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from common import bench_database_url, ensure_database, percentile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

BENCH_DATABASE = "adminsite_bench_tickets"
SECTIONS = ("queue", "search", "ticket", "api")


def backend_cpu_seconds(pid: int | None) -> float | None:
    """CPU time used so far by the PostgreSQL backend serving this process, when it runs on
    this machine (the embedded server): /proc/<pid>/stat utime + stime."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backend_pid() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


class Bench:
    """Wall time per run (median, p95) — what a user waits, which on a busy machine includes
    waiting for a CPU — and the CPU time the run really used (mean): this process's plus its
    PostgreSQL backend's, which does not depend on what else the machine is doing."""

    def __init__(self, requests: int, warmup: int) -> None:
        self.requests = requests
        self.warmup = warmup
        self.rows: list[tuple[str, float, float, int, str]] = []

    def measure(self, label: str, run, *, target: float | None = None) -> None:
        from django.db import connection, reset_queries
        from django.test.utils import CaptureQueriesContext

        for _ in range(self.warmup):
            run()
        with CaptureQueriesContext(connection) as captured:
            run()
        queries = len(captured.captured_queries)
        times = []
        backend_pid = _backend_pid()
        cpu_started, db_started = time.process_time(), backend_cpu_seconds(backend_pid)
        for _ in range(self.requests):
            reset_queries()
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1000)
        app_cpu = (time.process_time() - cpu_started) * 1000 / self.requests
        db_ended = backend_cpu_seconds(backend_pid)
        cpu = f"cpu {app_cpu:5.1f}"
        if db_started is not None and db_ended is not None and _backend_pid() == backend_pid:
            db_cpu = (db_ended - db_started) * 1000 / self.requests
            cpu = f"cpu {app_cpu + db_cpu:5.1f} ms (app {app_cpu:4.1f} + db {db_cpu:4.1f})"
        median, p95 = statistics.median(times), percentile(times, 0.95)
        verdict = ""
        if target is not None:
            verdict = "ok" if median < target else f"over {target:.0f} ms"
        self.rows.append((label, median, p95, queries, verdict))
        print(
            f"  {label:<52} median {median:6.1f} ms  p95 {p95:6.1f} ms  {cpu}  {queries:2d} queries  {verdict}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=50, help="timed runs of each measurement (default 50)"
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    parser.add_argument(
        "--tickets", type=int, default=1_000_000, help="tickets in the data set (default 1,000,000)"
    )
    parser.add_argument(
        "--database", default=BENCH_DATABASE, help=f"database name (default {BENCH_DATABASE})"
    )
    parser.add_argument(
        "--explain", action="store_true", help="print EXPLAIN ANALYZE of the main queries"
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="run only this section (repeatable); default all: " + ", ".join(SECTIONS),
    )
    args = parser.parse_args()
    if args.requests < 1 or args.warmup < 0 or args.tickets < 1:
        parser.error("--requests and --tickets must be at least 1, --warmup at least 0")

    url = bench_database_url(args.database)
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    # One connection for the whole run (the CPU figures follow its PostgreSQL backend).
    os.environ["CONN_MAX_AGE"] = "86400"
    # As in production: DEBUG off (no per-query log, no template debug data), static files
    # collected (their hashed names come from the manifest), requests over HTTPS.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "k" * 40)

    import django

    django.setup()

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.http import QueryDict
    from django.test import Client
    from django.urls import Resolver404, resolve

    from adminsite import services as console_services
    from tickets import queries
    from tickets.filters import parse_filters
    from tickets.models import Ticket

    class HttpsClient(Client):
        """Every request over HTTPS, as production serves them (DEBUG off redirects HTTP)."""

        def generic(self, *args, **kwargs):
            return super().generic(*args, **{**kwargs, "secure": True})

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tickets_ticket")
        have = cursor.fetchone()[0]
    if have < args.tickets:
        print(f"building the data set: {have:,} tickets, {args.tickets:,} wanted (several minutes)")
        started = time.monotonic()
        call_command("seed_demo", tickets=args.tickets)
        print(f"data set built in {time.monotonic() - started:.0f} s")
    # Index-only scans and good plans need a current visibility map and statistics; cheap
    # when nothing changed since the last run.
    with connection.cursor() as cursor:
        for table in (
            "tickets_ticket",
            "tickets_comment",
            "tickets_ticketevent",
            "tickets_ticketcount",
        ):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        cursor.execute("SELECT count(*) FROM tickets_comment")
        comments = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM tickets_ticket WHERE status IN ('new', 'open', 'pending', 'on_hold')"
        )
        active = cursor.fetchone()[0]
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
    total = Ticket.objects.count()

    user_model = get_user_model()
    agent = user_model.objects.get(username="agent")
    _token, raw_token = console_services.create_api_token(actor=agent, user=agent, name="bench")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw_token}"}
    client = HttpsClient()
    client.force_login(agent)

    long_ticket_id = (
        Ticket.objects.filter(comments__isnull=False)
        .values("id")
        .annotate(n=django.db.models.Count("comments"))
        .filter(n__gte=200)
        .order_by("id")
        .values_list("id", flat=True)
        .first()
    )

    def has_page(path: str) -> bool:
        try:
            resolve(path)
        except Resolver404:
            return False
        return client.get(path).status_code == 200

    load = os.getloadavg()
    print(
        f"Tickets benchmark: {total:,} tickets ({active:,} active), {comments:,} comments; {version}"
    )
    print(
        f"CPU cores: {os.cpu_count()}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"{args.requests} timed runs each after {args.warmup} warm-up runs"
    )

    bench = Bench(args.requests, args.warmup)
    sections = set(args.only or SECTIONS)

    def queue_data(query: str, page: int = 1):
        filters = parse_filters(QueryDict(query), user=agent)
        return lambda: queries.queue_page(user=agent, filters=filters, page=page)

    if "queue" in sections:
        print("\nQueue (statistics cards + 50 rows, as the queue page loads them)")
        bench.measure("default view (active, most urgent first)", queue_data(""), target=30)
        for query in ("assignee=me", "assignee=none&priority=urgent", "category=billing",
                      "breached=true", "ordering=nextDueAt", "ordering=-updatedAt", "status=all",
                      "status=all&category=billing&ordering=-createdAt"):  # fmt: skip
            bench.measure(query, queue_data(query), target=30)
        bench.measure("default view, page 200", queue_data("", page=200), target=30)
        if has_page("/admin/support/"):
            bench.measure(
                "GET /admin/support/ (the page)", lambda: client.get("/admin/support/"), target=30
            )
            bench.measure(
                "GET /admin/support/?assignee=me (htmx table)",
                lambda: client.get("/admin/support/?assignee=me", HTTP_HX_REQUEST="true"),
                target=30,
            )

    if "search" in sections:
        print("\nSearch (statistics + 50 rows)")
        for term in ("E1234", "oauth token", "chargeback refund", "invoice", "sync"):
            bench.measure(f"search={term} (active scope)", queue_data(f"search={term}"), target=100)
        for term in ("E1234", "oauth token", "invoice"):
            bench.measure(
                f"search={term} status=all (1M tickets)",
                queue_data(f"status=all&search={term}"),
                target=100,
            )
        if has_page("/admin/support/?search=oauth"):
            for query in ("search=oauth+token", "search=invoice", "status=all&search=oauth+token"):
                bench.measure(
                    f"GET /admin/support/?{query}",
                    lambda q=query: client.get(f"/admin/support/?{q}"),
                    target=100,
                )
            bench.measure(
                "GET /admin/support/?search=oauth+token (htmx, as typed)",
                lambda: client.get("/admin/support/?search=oauth+token", HTTP_HX_REQUEST="true"),
                target=100,
            )

    if "ticket" in sections and long_ticket_id:
        print(f"\nTicket with 200 comments (id {long_ticket_id})")

        def ticket_data():
            ticket = queries.ticket_for(agent, long_ticket_id)
            queries.comments_for(ticket, include_internal=True)
            queries.timeline_for(ticket)
            queries.customer_context(ticket)

        bench.measure("ticket + thread + timeline + customer context", ticket_data, target=50)
        page = f"/admin/support/{long_ticket_id}/"
        if has_page(page):
            bench.measure(f"GET {page} (the page)", lambda: client.get(page), target=50)
        comments_url = f"/api/admin/support/tickets/{long_ticket_id}/comments?pageSize=200"
        bench.measure(f"GET {comments_url}", lambda: client.get(comments_url, **auth), target=50)

    if "api" in sections:
        print("\nList API (Bearer token, 50 per page)")
        api = HttpsClient()
        for query, label in (
            ("", "default: every status, newest first"),
            ("?status=active&ordering=-priority", "active, most urgent first"),
            ("?assignee=me", "assignee=me"),
            ("?category=billing&priority=high", "category + priority"),
            ("?search=oauth+token&status=active", "search, active"),
            ("?page=1000", "page 1000"),
        ):
            bench.measure(
                f"GET /api/admin/support/tickets{query} ({label})",
                lambda q=query: api.get(f"/api/admin/support/tickets{q}", **auth),
                target=30,
            )

    if args.explain:
        print(
            "\nEXPLAIN ANALYZE of the default queue rows, the search count, and the 200-comment thread"
        )
        filters = parse_filters(QueryDict(""), user=agent)
        search = parse_filters(QueryDict("search=oauth token"), user=agent)
        statements = [
            queries.ticket_queue(user=agent, filters=filters)[:50].query.sql_with_params(),
            queries.apply_filters(Ticket.objects.all(), search)
            .values("status")
            .query.sql_with_params(),
        ]
        if long_ticket_id:
            from tickets.models import Comment

            statements.append(
                Comment.objects.filter(ticket_id=long_ticket_id)
                .select_related("author")
                .order_by("created_at", "id")
                .query.sql_with_params()
            )
        with connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                print("\n".join(row[0] for row in cursor.fetchall()))
                print()

    over = [row for row in bench.rows if row[4].startswith("over")]
    print(
        f"\n{len(bench.rows) - len(over)} of {len(bench.rows)} measurements under their target median"
        + (f"; over: {', '.join(row[0] for row in over)}" if over else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
