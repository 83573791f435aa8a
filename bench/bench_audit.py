"""Audit trail benchmark: prints its figures and exits 0 (targets are reported, not enforced).

    .venv/bin/python bench/bench_audit.py                  # 5,000,000 entries
    .venv/bin/python bench/bench_audit.py --entries 200000 # scaled down
    .venv/bin/python bench/bench_audit.py --reuse          # keep an already loaded bench database
                                                           # (migrated to the current schema)

Works on its own database (``bench_audit`` on the embedded PostgreSQL, or the server of
DATABASE_URL), which it drops and recreates unless ``--reuse`` finds it loaded. Figures:

1. record(): median time one call adds inside a request-like transaction (target <= 1 ms),
   and the median commit that follows;
2. eight writer processes, with the sealer process running beside them as in production:
   events per second in total, and how long after the writers stopped every entry was linked
   (target >= 2,000/s, all linked). Three runs: each entry its own transaction, committed by
   its INSERT alone (autocommit, as Django runs a statement outside ``atomic()``: how a GET
   request records its access event or a login its ``auth.login``); one entry inside
   ``transaction.atomic()`` (BEGIN and COMMIT as round trips of their own, which a real action
   pays for its own writes anyway); and ``--batch`` entries per transaction. Then, for
   reference, the machine's ceiling for the first two: the same writers inserting one bare row
   (a bigserial and a bigint, no audit, no trigger) per transaction;
3. audit_verify over every entry in the database: entries per second (target >= 100,000/s);
4. the viewer's first page filtered by actor and by target (target < 100 ms), after loading
   the entries with COPY (load time printed), with the plans of their queries.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from common import bench_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

EVENTS = [
    ("ticket.created", 0.18), ("ticket.updated", 0.25), ("ticket.assigned", 0.1), ("ticket.commented", 0.15),
    ("ticket.resolved", 0.06), ("customer.viewed", 0.1), ("auth.login", 0.08), ("auth.login_failed", 0.02),
    ("alert.resolved", 0.02), ("order.refunded", 0.01), ("impersonation.started", 0.01), ("audit.exported", 0.02),
]  # fmt: skip
ACTORS = 2000
TICKETS = 200_000
SPAN = timedelta(days=730)


def log(message: str) -> None:
    print(message, flush=True)


# --- database -------------------------------------------------------------------------------


def admin_dsn(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def prepare_database(url: str, *, reuse: bool, entries: int) -> bool:
    """Create (or keep) the bench database; True when it already holds the entries."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_dsn(url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and reuse:
            try:
                with psycopg.connect(url) as bench:
                    count = bench.execute("SELECT count(*) FROM audit_chainlink").fetchone()[0]
                if count >= entries:
                    log(f"Reusing database {name} with {count:,} linked entries.")
                    return True
            except psycopg.Error:
                pass
        if exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return False


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
    import django

    django.setup()


# --- bulk load with COPY --------------------------------------------------------------------


ENTRY_COLUMNS = (
    "id", "timestamp", "event", "action", "source", "content_type_id", "object_pk", "object_id", "actor_id",
    "impersonator_id", "cid", "actor_name", "actor_email", "impersonator_name", "remote_addr", "user_agent",
    "object_repr", "changes", "changes_text", "additional_data",
)  # fmt: skip
LINK_COLUMNS = (
    "seq",
    "entry_id",
    "prev_hash",
    "hash",
    "identity_digest",
    "subject_digest",
    "sealed_at",
)

NULL = "\\N"  # COPY text format


def bulk_load(total: int) -> float:
    """Load ``total`` generated entries with COPY, build the indexes, then link them all: the
    digests come from PostgreSQL with the sealing step's own SQL, the hashes from Python, and
    the links go back with COPY. Returns the seconds the whole load took."""
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    from audit import chain

    rng = random.Random(20260101)
    users = get_user_model()
    users.objects.bulk_create(
        [
            users(
                username=f"user{n}",
                first_name=f"First{n}",
                last_name=f"Last{n}",
                email=f"user{n}@example.com",
                is_staff=n < 200,
            )
            for n in range(ACTORS)
        ],  # fmt: skip
        batch_size=1000,
    )
    people = [
        (pk, f"{first} {last} ({username})", email, username)
        for pk, username, first, last, email in users.objects.order_by("pk").values_list(
            "pk", "username", "first_name", "last_name", "email"
        )
    ]
    ticket_type = ContentType.objects.get_by_natural_key("tickets", "ticket").pk
    user_type = ContentType.objects.get_for_model(users).pk
    names, weights = zip(*EVENTS, strict=True)
    start = datetime.now(UTC) - SPAN
    step = SPAN / total
    t0 = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("""SELECT indexname, indexdef FROM pg_indexes
                          WHERE tablename = 'audit_auditentry' AND indexname NOT LIKE '%%pkey'""")  # fmt: skip
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    raw = connection.connection
    entry_copy = f"COPY audit_auditentry ({', '.join(ENTRY_COLUMNS)}) FROM STDIN"
    batch = 50_000
    done = 0
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"
    with raw.cursor() as cur:
        while done < total:
            lines = []
            for entry_id in range(done + 1, min(done + batch, total) + 1):
                event = rng.choices(names, weights)[0]
                actor = people[rng.randrange(ACTORS)]
                imp = people[rng.randrange(200)] if rng.random() < 0.01 else None
                if event.startswith("ticket."):
                    ticket = rng.randrange(1, TICKETS + 1)
                    target = (
                        ticket_type,
                        ticket,
                        f"Ticket #{ticket}: Cannot sync mailbox {ticket % 97}",
                    )
                else:
                    customer = people[rng.randrange(ACTORS)]
                    target = (user_type, customer[0], customer[3])
                changes = '{"status": ["new", "open"]}' if event == "ticket.updated" else NULL
                ip = f"10.{entry_id % 250}.{(entry_id // 250) % 250}.{entry_id % 7 + 1}"
                lines.append(
                    f"{entry_id}\t{(start + step * entry_id).isoformat()}\t{event}\t4\tweb\t{target[0]}\t{target[1]}"
                    f"\t{target[1]}\t{actor[0]}\t{imp[0] if imp else NULL}\t{entry_id:032x}\t{actor[1]}\t{actor[2]}"
                    f"\t{imp[1] if imp else ''}\t{ip}\t{agent}\t{target[2]}\t{changes}\t\t"
                    f'{{"n": {entry_id % 1000}, "via": "{"api" if entry_id % 3 else "web"}"}}\n'
                )
            with cur.copy(entry_copy) as copy:
                copy.write("".join(lines))
            done = min(done + batch, total)
            if done % 1_000_000 == 0 or done == total:
                log(f"  copied {done:,} entries ({time.monotonic() - t0:.0f} s)")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('audit_auditentry', 'id'), %s)", [total]
        )
    log(f"  linking them into the chain ({time.monotonic() - t0:.0f} s)…")
    # audit.chain's constant expressions, nothing from outside.
    digests_sql = (
        f"SELECT e.id, d.identity, d.subject, {chain.content_digest_sql('d.identity', 'd.subject')} "  # noqa: S608
        f"FROM audit_auditentry e CROSS JOIN LATERAL (SELECT {chain.IDENTITY_DIGEST_SQL} AS identity, "
        f"{chain.SUBJECT_DIGEST_SQL} AS subject OFFSET 0) d WHERE e.id BETWEEN %s AND %s ORDER BY e.id"
    )
    prev = chain.GENESIS_HASH
    sealed_at = datetime.now(UTC).isoformat()
    link_copy = f"COPY audit_chainlink ({', '.join(LINK_COLUMNS)}) FROM STDIN"
    with raw.cursor() as cur:
        for low in range(1, total + 1, batch):
            rows = cur.execute(digests_sql, [low, low + batch - 1]).fetchall()
            lines = []
            for entry_id, identity, subject, content in rows:
                current = chain.link_hash(prev, content)
                lines.append(
                    f"{entry_id}\t{entry_id}\t\\\\x{prev.hex()}\t\\\\x{current.hex()}\t\\\\x{identity.hex()}"
                    f"\t\\\\x{subject.hex()}\t{sealed_at}\n"
                )
                prev = current
            with cur.copy(link_copy) as copy:
                copy.write("".join(lines))
    with connection.cursor() as cursor:
        # Every loaded entry is linked: the sealing step goes on from here.
        cursor.execute("UPDATE audit_sealstate SET snapshot = pg_current_snapshot() WHERE id = 1")
        log(f"  building {len(indexes)} indexes ({time.monotonic() - t0:.0f} s)…")
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("VACUUM ANALYZE audit_auditentry")
        cursor.execute("VACUUM ANALYZE audit_chainlink")
    return time.monotonic() - t0


# --- 1. record() ----------------------------------------------------------------------------


def bench_record(samples: int) -> tuple[float, float, float]:
    """Median and p95 of the time record() adds inside the transaction, and the median time
    of the commit that follows (sealing is the sealer process's work, not the request's)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from audit.context import audit_context
    from audit.services import record

    actor = get_user_model().objects.get(username="user7")
    target = get_user_model().objects.get(username="user8")
    record_times, commit_times = [], []
    settings.DEBUG = False  # as in production: no query log kept per statement
    with audit_context(
        actor=actor, ip="203.0.113.7", user_agent="bench/1.0", request_id="bench", source="web"
    ):
        for number in range(samples + 50):
            block = transaction.atomic()
            block.__enter__()
            # A request-like transaction: lock and read a row, then record the event.
            with connection.cursor() as cursor:
                cursor.execute("SELECT id FROM auth_user WHERE id = %s FOR UPDATE", [target.pk])
            started = time.perf_counter()
            record(
                "ticket.updated",
                target=target,
                changes={"status": ["new", "open"]},
                data={"n": number},
            )
            recorded = time.perf_counter()
            block.__exit__(None, None, None)  # commit
            committed = time.perf_counter()
            if number >= 50:  # warmed up
                record_times.append(recorded - started)
                commit_times.append(committed - recorded)
    record_times.sort()
    return (statistics.median(record_times) * 1000, record_times[int(len(record_times) * 0.95)] * 1000,
            statistics.median(commit_times) * 1000)  # fmt: skip


# --- 2. eight writers -----------------------------------------------------------------------


def writer_child(seconds: float, name: str, per_transaction: int, what: str) -> int:
    """One writer: ``record()`` calls (``what`` "audit"), or for the reference figure one bare
    row each in a table of its own ("bare"), either committed alone or ``per_transaction``
    per ``transaction.atomic()`` block."""
    import resource

    from django.db import connection, transaction

    from audit.context import audit_context
    from audit.services import record

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    if what == "bare":
        bare = connection.cursor()

        def write(n: int) -> None:
            bare.execute("INSERT INTO bench_bare_row (n) VALUES (%s)", [n])
    else:

        def write(n: int) -> None:
            record("bench.write", data={"writer": name, "n": n})

    print(f"ready {backend}", flush=True)
    sys.stdin.readline()
    count = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    deadline = time.monotonic() + seconds
    with audit_context(request_id=f"bench-{name}", source="bench"):
        while time.monotonic() < deadline:
            if not per_transaction:  # autocommit: the INSERT is the whole transaction
                write(count)
                count += 1
                continue
            with transaction.atomic():
                for _ in range(per_transaction):
                    write(count)
                    count += 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"{count} {cpu:.3f}", flush=True)
    sys.stdin.readline()  # keep the connection (and its backend's CPU figures) until told
    return 0


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process on this machine (a database backend)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_writers(
    url: str, writers: int, seconds: float, per_transaction: int, what: str = "audit"
) -> dict:
    from django.db import connection

    from audit import chain

    # As in production: DEBUG off (no query log kept per statement).
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-" + "k" * 40,
    }
    procs = [
        subprocess.Popen(  # noqa: S603 - this script
            [
                sys.executable,
                __file__,
                "--writer-child",
                str(seconds),
                f"w{n}",
                str(per_transaction),
                what,
            ],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for n in range(writers)
    ]
    sealer = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "audit_sealer"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert "Audit sealer running" in sealer.stdout.readline()
    backends = []
    for proc in procs:
        word, pid = proc.stdout.readline().split()
        assert word == "ready"
        backends.append(int(pid))
    local = all(Path(f"/proc/{pid}/stat").exists() for pid in backends)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND pid <> ALL(%s)",
            [backends],
        )
        sealer_backends = [row[0] for row in cursor.fetchall()]
    groups = {"writer backends": backends, "sealer": [sealer.pid, *sealer_backends]}
    tracked = [pid for pids in groups.values() for pid in pids] if local else []
    cpu_before = {pid: _process_cpu(pid) for pid in tracked}
    started = time.monotonic()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [proc.stdout.readline().split() for proc in procs]
    elapsed = time.monotonic() - started
    writers_done = {pid: _process_cpu(pid) - cpu_before[pid] for pid in backends if local}
    for proc in procs:
        proc.stdin.write("bye\n")
        proc.stdin.flush()
        proc.wait()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) {chain.PENDING_SQL}")
        unlinked = cursor.fetchone()[0]
        stopped = time.monotonic()
        while chain.has_unsealed() and time.monotonic() - stopped < 60:
            time.sleep(0.01)
        linked_after = time.monotonic() - stopped
        cpu_used = {
            **writers_done,
            **{
                pid: _process_cpu(pid) - cpu_before[pid]
                for pid in tracked
                if pid not in writers_done
            },
        }
        cursor.execute("SELECT count(*), min(seq), max(seq) FROM audit_chainlink")
        links, first, last = cursor.fetchone()
    sealer.terminate()
    sealer.wait(timeout=30)
    total = sum(int(count) for count, _ in results)
    writer_cpu = sum(float(cpu) for _, cpu in results)
    return {
        "total": total, "elapsed": elapsed, "unlinked": unlinked, "linked_after": linked_after,
        "contiguous": links == last - first + 1,
        "cpu_ms_per_event": 1000 * (writer_cpu + sum(cpu_used.values())) / total if total and local else None,
        "cpu_ms_split": {
            "writers": 1000 * writer_cpu / total,
            **{name: 1000 * sum(cpu_used.get(pid, 0.0) for pid in pids) / total for name, pids in groups.items()},
        } if total and local else None,
    }  # fmt: skip


def cpu_pressure() -> str:
    """The share of the last 10 s in which some runnable task waited for a CPU (Linux PSI)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "n/a"
    return line.split()[1].split("=")[1] + "%"


# --- 3. verify ------------------------------------------------------------------------------


def bench_verify():
    from audit import chain

    report = chain.verify()
    return report


# --- 4. viewer ------------------------------------------------------------------------------


def bench_viewer(runs: int) -> dict[str, tuple[float, float, str]]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from adminsite import roles
    from adminsite import services as console_services

    users = get_user_model()
    viewer = users.objects.filter(
        username="bench-admin"
    ).first() or console_services.create_staff_user(
        actor=None,
        username="bench-admin",
        email="bench@example.com",
        password=None,
        role=roles.ADMIN,
    )
    client = Client()
    client.force_login(viewer)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT actor_id, count(*) FROM audit_auditentry WHERE actor_id IS NOT NULL"
            " GROUP BY actor_id ORDER BY count(*) DESC LIMIT 1"
        )
        busy_actor = cursor.fetchone()[0]
        cursor.execute(
            "SELECT object_pk FROM audit_auditentry WHERE content_type_id = "
            "(SELECT id FROM django_content_type WHERE app_label = 'tickets' AND model = 'ticket') "
            "AND id > (SELECT max(id) / 2 FROM audit_auditentry) LIMIT 1"
        )
        ticket = cursor.fetchone()[0]
    username = users.objects.get(pk=busy_actor).username
    cases = {
        "actor": f"/admin/audit/?actor={username}",
        "target": f"/admin/audit/?target_type=tickets.ticket&target_id={ticket}",
        "actor, 2nd page": None,
        "no filter": "/admin/audit/",
        "search": "/admin/audit/?q=mailbox+last7",
    }
    results = {}
    for label, url in cases.items():
        if url is None:
            first = client.get(cases["actor"]).content.decode()
            if 'data-testid="older"' not in first:
                continue  # the actor has a single page
            href = first.split('data-testid="older"')[0].rsplit('href="', 1)[1].split('"', 1)[0]
            url = "/admin/audit/" + href.replace("&amp;", "&")
        client.get(url)  # warm
        times = []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
        entries_sql = next(
            q["sql"] for q in captured.captured_queries if 'FROM "audit_auditentry"' in q["sql"]
        )
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + entries_sql)
            plan = "\n".join("      " + row[0] for row in cursor.fetchall())
        results[label] = (statistics.median(times) * 1000, max(times) * 1000, plan, len(captured))
    return results


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--entries", type=int, default=5_000_000, help="entries to bulk-load (default 5,000,000)"
    )
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the writers write")
    parser.add_argument("--samples", type=int, default=2000, help="record() calls timed")
    parser.add_argument("--database", default="bench_audit")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the bench database if already loaded"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=5,
        help="also run the writers with this many entries per transaction (0: skip)",
    )
    parser.add_argument(
        "--writer-child",
        nargs=4,
        metavar=("SECONDS", "NAME", "PER_TX", "WHAT"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--only",
        choices=["viewer", "record", "writers", "verify"],
        action="append",
        help="run only this part (repeatable)",
    )
    args = parser.parse_args()

    if args.writer_child:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")
        import django

        django.setup()
        seconds, name, per_transaction, what = args.writer_child
        return writer_child(float(seconds), name, int(per_transaction), what)

    if args.entries < 1000:
        parser.error("--entries must be at least 1000")
    url = bench_database_url(args.database)
    loaded = prepare_database(url, reuse=args.reuse, entries=args.entries)
    setup_django(url)
    from django.core.management import call_command

    log(f"Machine: {os.cpu_count()} CPUs, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
        f"CPU pressure {cpu_pressure()}")  # fmt: skip
    # Also on a reused database: the figures are of the current schema and database functions.
    call_command("migrate", verbosity=0)
    if not loaded:
        log(f"Bulk-loading {args.entries:,} entries with their chain (COPY)…")
        seconds = bulk_load(args.entries)
        log(f"LOAD      {args.entries:,} entries + links loaded and indexed in {seconds:.1f} s "
            f"({args.entries / seconds:,.0f} entries/s)")  # fmt: skip

    parts = set(args.only or ["viewer", "record", "writers", "verify"])
    if "viewer" in parts:
        log(
            "\n(4) Viewer first page with the loaded entries (median of 20 requests, whole request):"
        )
    for label, (median, worst, plan, queries) in (
        bench_viewer(20).items() if "viewer" in parts else ()
    ):
        log(
            f"VIEWER    {label:<16} median {median:6.1f} ms  (max {worst:6.1f} ms, {queries} queries)  target < 100 ms"
        )
        log(plan)

    if "record" in parts:
        log("\n(1) record() inside a request-like transaction:")
        median, p95, seal_median = bench_record(args.samples)
        log(
            f"RECORD    median {median:.3f} ms added by record()  (p95 {p95:.3f} ms)  target <= 1 ms"
        )
        log(f"          the commit that follows: median {seal_median:.3f} ms")

    for per_transaction in (
        ((0, 1, args.batch) if args.batch > 1 else (0, 1)) if "writers" in parts else ()
    ):
        how = {
            0: "one entry per transaction, committed by its INSERT (autocommit)",
            1: "one entry per transaction.atomic() block",
        }.get(per_transaction, f"{per_transaction} entries per transaction.atomic() block")
        log(f"\n(2) {args.writers} writer processes for {args.seconds:.0f} s, {how}:")
        result = bench_writers(url, args.writers, args.seconds, per_transaction)
        rate = result["total"] / result["elapsed"]
        log(f"WRITERS   {result['total']:,} entries in {result['elapsed']:.1f} s = {rate:,.0f} events/s total  "
            f"target >= 2,000/s  (CPU pressure {cpu_pressure()})")  # fmt: skip
        log(f"          unlinked when the writers stopped: {result['unlinked']}, all linked "
            f"{result['linked_after']:.2f} s later; chain seqs contiguous: {result['contiguous']}")  # fmt: skip
        if result["cpu_ms_per_event"]:
            per_event = result["cpu_ms_per_event"]
            log(f"          CPU per event (writers, sealer and their database backends): {per_event:.2f} ms, "
                f"so at most {1000 * (os.cpu_count() or 1) / per_event:,.0f} events/s on {os.cpu_count()} idle CPUs")  # fmt: skip
            split = ", ".join(f"{name} {ms:.2f} ms" for name, ms in result["cpu_ms_split"].items())
            log(f"          of which {split}")

    if "writers" in parts:
        # The machine's ceiling for the same writers: a bare row per transaction, no audit.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("CREATE TABLE bench_bare_row (id bigserial PRIMARY KEY, n bigint)")
        try:
            for per_transaction, how in ((0, "autocommit"), (1, "transaction.atomic()")):
                result = bench_writers(url, args.writers, args.seconds, per_transaction, "bare")
                rate = result["total"] / result["elapsed"]
                cpu = result["cpu_ms_per_event"]
                log(f"REFERENCE the same {args.writers} writers, one bare row per transaction ({how}), "
                    f"no audit: {rate:,.0f} rows/s" + (f" (CPU per row {cpu:.2f} ms)" if cpu else ""))  # fmt: skip
        finally:
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE bench_bare_row")

    if "verify" in parts:
        log("\n(3) audit_verify over the whole chain:")
        report = bench_verify()
        log(f"VERIFY    {report.entries:,} entries in {report.seconds:.1f} s = {report.rate:,.0f} entries/s  "
            f"target >= 100,000/s  ({'intact' if report.ok else report.summary()})")  # fmt: skip
    log(f"\nMachine load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}, "
        f"CPU pressure {cpu_pressure()}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
