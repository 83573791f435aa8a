#!/usr/bin/env python
"""Benchmark: Stripe webhook events stored and processed per second, duplicates included.

Uses a database of its own, ``adminsite_bench_webhooks``, on the same server as the development
database (the embedded PostgreSQL under .devdata/, or the server of DATABASE_URL); it is
created and migrated on first use and its shop tables are emptied before each of its two runs.

    .venv/bin/python bench/bench_webhooks.py [--events 4000] [--duplicates 0.1] [--processes 4]
                                             [--workers 2]

Every event is signed exactly as Stripe signs it and POSTed through the real view
(``/stripe/webhook`` behind the whole middleware stack: signature check, INSERT … ON CONFLICT
DO NOTHING, the drain flag in Redis, 200) with Django's test client, from ``--processes``
processes at once (as gunicorn workers would receive them). As in production, DEBUG is off (no
per-query log) and deliveries arrive over HTTPS. The mix: Checkout completions for pending
orders, expirations of others, price and product updates arriving out of order, and
``--duplicates`` of them sent again. Two runs, each on fresh tables with the same events:

1. phases: all deliveries stored, then all events processed by the drain task's code
   (``shop.process_webhook_events``: batches claimed with SKIP LOCKED, locks, order state
   machine, history, audit) called in ``--workers`` processes; prints the rate of each side
   alone (deliveries/s stored, events/s processed).
2. together, as production runs: a Celery worker (``celery -A adminsite worker`` with
   ``--concurrency`` ``--workers``, 2 being the production default; started before the clock,
   on this run's own Redis key prefix) takes the drains that the deliveries queue while the
   senders are still delivering. End to end is the number of distinct events (and of
   deliveries) over the wall time from the first POST until no stored event is left
   unprocessed.

After each run, a loss check: every distinct event stored once and processed, every completed
order paid exactly once. The run's keys in Redis are deleted at the end.

Earlier versions ran the phases only (with 4 processing processes and DEBUG on) and gave end to
end as deliveries over the sum of both phases' times; the phase figures remain comparable,
end to end is not. Each sender is warmed before the clock starts (a GET of /healthz loads the
URL map and middleware, and its database connection is opened), as a server's workers are;
before, every sender's first delivery paid those ~0.1 s inside the measured time.

Target (the shop issue): at least 500 events per second stored and processed, with no loss.
A benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from common import bench_database_url, ensure_database

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

BENCH_DATABASE = "adminsite_bench_webhooks"
SECRET = "whsec_bench_0d5e"  # noqa: S105 - the benchmark signs and checks its own events


def sign(payload: bytes, timestamp: int) -> str:
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def setup(args):
    url = bench_database_url(BENCH_DATABASE)
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["STRIPE_WEBHOOK_SECRET"] = SECRET
    os.environ["STRIPE_SECRET_KEY"] = ""  # processing must not call Stripe
    # This run's keys in Redis (the task queue, the drain flag) get a prefix of their own: in
    # the first run nothing consumes the tasks the view queues (the drain's code is called
    # directly), in the second the worker this script starts on the same prefix takes them.
    os.environ["REDIS_KEY_PREFIX"] = f"bench-webhooks-{os.getpid()}:"
    os.environ["CONN_MAX_AGE"] = "86400"
    # As in production: DEBUG off (no query log kept per statement, no signal-receiver checks).
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-" + "k" * 40)
    import warnings

    import django

    # DEBUG off serves collected static files; the benchmark needs none.
    warnings.filterwarnings("ignore", message="No directory at")

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def make_data(n_orders: int):
    """Pending orders to pay or expire, and a catalogue to update (bulk rows, no Stripe)."""
    import uuid

    from django.db import connection

    from adminsite import services as console_services
    from shop.models import Order, OrderLine, Price, Product

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE shop_orderevent, shop_orderline, shop_refund, shop_order, shop_cartitem,"
            " shop_cart, shop_webhookevent, shop_price, shop_product, shop_cataloguesync"
            " RESTART IDENTITY CASCADE"
        )
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username="bench.customer").first()
    if user is None:
        user = console_services.create_customer(
            actor=None, username="bench.customer", email="bench@example.com"
        )
    products = Product.objects.bulk_create(
        [Product(stripe_id=f"prod_bench_{i}", name=f"Bench product {i}") for i in range(20)]
    )
    prices = Price.objects.bulk_create(
        [
            Price(
                stripe_id=f"price_bench_{i}",
                product=products[i % 20],
                currency="usd",
                unit_amount=1000 + i,
            )
            for i in range(50)
        ]
    )
    orders = Order.objects.bulk_create(
        [
            Order(
                customer=user,
                currency="usd",
                amount_total=4900,
                checkout_idempotency_key=f"bench-{uuid.uuid4()}",
            )
            for _ in range(n_orders)
        ]
    )
    OrderLine.objects.bulk_create(
        [
            OrderLine(
                order=o,
                price=prices[0],
                stripe_price_id=prices[0].stripe_id,
                product_name="Bench",
                unit_amount=4900,
                currency="usd",
                quantity=1,
            )
            for o in orders
        ]
    )
    return orders, prices, products


def build_events(n: int, duplicates: float, orders, prices, products) -> tuple[list[dict], int]:
    rng = random.Random(7)
    now = int(time.time())
    events = []
    order_iter = iter(orders)
    completed = 0
    for i in range(n):
        roll = rng.random()
        if roll < 0.45:
            order = next(order_iter)
            obj = {
                "id": f"cs_bench_{order.pk}", "object": "checkout.session", "client_reference_id": str(order.pk),
                "payment_status": "paid", "payment_intent": f"pi_bench_{order.pk}", "amount_total": 4900,
                "currency": "usd", "customer": "cus_bench", "metadata": {"order_id": str(order.pk)},
            }  # fmt: skip
            kind = "checkout.session.completed"
            completed += 1
        elif roll < 0.6:
            order = next(order_iter)
            obj = {
                "id": f"cs_bench_{order.pk}",
                "object": "checkout.session",
                "client_reference_id": str(order.pk),
                "payment_status": "unpaid",
                "status": "expired",
            }
            kind = "checkout.session.expired"
        elif roll < 0.9:
            price = rng.choice(prices)
            obj = {
                "id": price.stripe_id, "object": "price", "active": rng.random() > 0.2, "currency": "usd",
                "unit_amount": price.unit_amount, "product": price.product.stripe_id, "nickname": f"v{i}",
                "recurring": None, "created": now - 86400,
            }  # fmt: skip
            kind = "price.updated"
        else:
            product = rng.choice(products)
            obj = {
                "id": product.stripe_id,
                "object": "product",
                "name": f"{product.name} v{i}",
                "active": True,
                "images": [],
                "metadata": {},
                "created": now - 86400,
            }
            kind = "product.updated"
        events.append(
            {
                "id": f"evt_bench_{i:08d}",
                "object": "event",
                "api_version": "2025-03-31.basil",
                # Spread over the last hour and shuffled below: arrival order is not event order.
                "created": now - rng.randint(0, 3600),
                "livemode": False,
                "type": kind,
                "data": {"object": obj},
            }  # fmt: skip
        )
    unique = len(events)
    events += rng.sample(events, int(unique * duplicates))
    rng.shuffle(events)
    return events, completed


def _released_together(target, chunks: list) -> tuple[list, float]:
    """Start ``target(chunk, start_event)`` in one forked process per chunk (as gunicorn or
    Celery prefork children would) and release them together; returns the children and the
    moment they were released (time.perf_counter)."""
    import multiprocessing

    from django.db import connections

    connections.close_all()  # each child opens its own connection
    context = multiprocessing.get_context("fork")
    start_event = context.Event()
    children = [context.Process(target=target, args=(chunk, start_event)) for chunk in chunks]
    for child in children:
        child.start()
    time.sleep(0.5)  # let every child finish starting before the clock runs
    started = time.perf_counter()
    start_event.set()
    return children, started


def _in_processes(processes: int, target, chunks: list) -> float:
    """Run ``target(chunk, start_event)`` in ``processes`` processes released together;
    returns the wall time."""
    children, started = _released_together(target, chunks[:processes])
    for child in children:
        child.join()
    return time.perf_counter() - started


def _post_chunk(bodies: list[bytes], start_event) -> None:
    from django.db import connection
    from django.test import Client

    client = Client()
    # Warm, as a server's worker is after its first request: the URL map and the middleware
    # loaded (the health check touches nothing else), the database connection open.
    client.get("/healthz", secure=True)
    connection.ensure_connection()
    start_event.wait()
    failures = 0
    for body in bodies:
        response = client.post(
            "/stripe/webhook", data=body, content_type="application/json", secure=True,
            HTTP_STRIPE_SIGNATURE=sign(body, int(time.time())),
        )  # fmt: skip
        failures += response.status_code != 200
    if failures:
        print(f"  {failures} deliveries answered other than 200")


def post_all(events: list[dict], processes: int) -> float:
    bodies = [json.dumps(e).encode() for e in events]
    return _in_processes(processes, _post_chunk, [bodies[i::processes] for i in range(processes)])


def _drain(_chunk, start_event) -> None:
    from shop import tasks

    start_event.wait()
    # What the queued drain task runs: batches taken with SKIP LOCKED until none is left.
    tasks.process_webhook_events.run()


def process_all(workers: int) -> float:
    return _in_processes(workers, _drain, [None] * workers)


def start_worker(concurrency: int, log_path: Path):
    """A Celery worker as production runs it (``celery -A adminsite worker``), with this run's
    settings and key prefix, so it takes exactly the drains the deliveries queue. Returns the
    process once the worker says it is ready."""
    import subprocess

    log = log_path.open("w")
    worker = subprocess.Popen(  # noqa: S603 - our own interpreter and the project's command
        [sys.executable, "-m", "celery", "-A", "adminsite", "worker", "--loglevel=INFO",
         f"--concurrency={concurrency}", "--pool=prefork"],
        cwd=Path(__file__).resolve().parent.parent, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while " ready." not in log_path.read_text():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise SystemExit(f"the Celery worker did not start; see {log_path}")
        time.sleep(0.2)
    return worker


def stop_worker(worker) -> None:
    import signal

    worker.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish first
    try:
        worker.wait(timeout=60)
    except Exception:  # noqa: BLE001 - a stuck worker is killed, the figures are already taken
        worker.kill()
        worker.wait()


def store_and_process(events: list[dict], processes: int, worker) -> tuple[float, float]:
    """Deliveries from the senders while the worker processes what they queue; returns
    (seconds until every delivery was answered, seconds until no stored event was left
    unprocessed), both from the first POST."""

    from shop.models import WebhookEvent, WebhookStatus

    bodies = [json.dumps(e).encode() for e in events]
    senders, started = _released_together(
        _post_chunk, [bodies[i::processes] for i in range(processes)]
    )
    for child in senders:
        child.join()
    stored_at = time.perf_counter() - started
    # An event being processed stays "received" until its batch commits.
    while WebhookEvent.objects.filter(status=WebhookStatus.RECEIVED).exists():
        if worker.poll() is not None:
            raise SystemExit("the Celery worker stopped during the run")
        time.sleep(0.02)
    return stored_at, time.perf_counter() - started


def forget_queued_tasks() -> None:
    """This run's keys in Redis (its queue, drain flag, metric buffer) are deleted at the end."""
    from django.conf import settings

    from shop import services

    client = services._redis()
    keys = list(client.scan_iter(f"{settings.REDIS_KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)


def loss_check(distinct: int, completed: int) -> None:
    from django.db.models import Count

    from shop.models import Order, OrderEvent, WebhookEvent

    stored = WebhookEvent.objects.count()
    by_status = dict(WebhookEvent.objects.values_list("status").annotate(n=Count("pk")).order_by())
    paid = Order.objects.filter(status="paid").count()
    paid_steps = OrderEvent.objects.filter(to_status="paid").count()
    duplicates_paid = (
        OrderEvent.objects.filter(to_status="paid")
        .values("order")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count()
    )
    lost = distinct - stored
    unprocessed = by_status.get("received", 0) + by_status.get("failed", 0)
    print(f"  events by status: {by_status}")
    print(
        f"  loss check: {lost} distinct events not stored, {unprocessed} not processed, "
        f"{paid}/{completed} completed orders paid, {paid_steps} paid transitions, "
        f"{duplicates_paid} orders paid twice"
    )
    ok = lost == 0 and unprocessed == 0 and paid == completed == paid_steps and not duplicates_paid
    print("  no loss" if ok else "  LOSS DETECTED")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=4000, help="distinct events (default 4000)")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share sent twice (0.1)")
    parser.add_argument("--processes", type=int, default=4, help="concurrent senders (4)")
    parser.add_argument("--workers", type=int, default=2, help="processing concurrency (2)")
    args = parser.parse_args()
    setup(args)

    from shop.models import WebhookEvent

    def fresh():
        orders, prices, products = make_data(args.events)
        return build_events(args.events, args.duplicates, orders, prices, products)

    events, completed = fresh()
    sent = len(events)
    print(
        f"{sent} deliveries: {args.events} distinct events + {sent - args.events} duplicates, "
        f"{args.processes} sending processes, {args.workers} processing"
    )

    print("phases (storing, then processing):")
    post_seconds = post_all(events, args.processes)
    stored = WebhookEvent.objects.count()
    print(
        f"  stored    {sent / post_seconds:8.0f} deliveries/s  ({post_seconds:.2f} s, {stored} rows)"
    )
    process_seconds = process_all(args.workers)
    print(f"  processed {stored / process_seconds:8.0f} events/s      ({process_seconds:.2f} s)")
    loss_check(args.events, completed)

    print("together (a Celery worker processing while deliveries arrive):")
    events, completed = fresh()  # same seed, so the same events on fresh tables
    forget_queued_tasks()  # the drain queued by the first run's deliveries
    log_path = Path(tempfile.gettempdir()) / f"bench-webhooks-worker-{os.getpid()}.log"
    worker = start_worker(args.workers, log_path)
    try:
        stored_at, done_at = store_and_process(events, args.processes, worker)
    finally:
        stop_worker(worker)
        forget_queued_tasks()
    print(f"  all stored after {stored_at:.2f} s ({sent / stored_at:.0f} deliveries/s)")
    print(
        f"  end to end {args.events / done_at:7.0f} distinct events/s "
        f"({sent / done_at:.0f} deliveries/s) stored and processed in {done_at:.2f} s  "
        "(target ≥ 500)"
    )
    loss_check(args.events, completed)
    log_path.unlink()


if __name__ == "__main__":
    main()
