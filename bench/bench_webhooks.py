#!/usr/bin/env python
"""Benchmark: Stripe webhook events stored and processed per second, duplicates included.

Uses a database of its own, ``adminsite_bench_webhooks``, on the same server as the development
database (the embedded PostgreSQL under .devdata/, or the server of DATABASE_URL); it is
created and migrated on first use and its shop tables are emptied at each run.

    .venv/bin/python bench/bench_webhooks.py [--events 4000] [--duplicates 0.1] [--processes 4]

Every event is signed exactly as Stripe signs it and POSTed through the real view
(``/stripe/webhook``: signature check, INSERT … ON CONFLICT DO NOTHING, 200) with Django's
test client, from ``--processes`` processes at once; the Celery task code processes each stored
event (``shop.process_webhook_event`` run in-process, as a worker runs it: locks, order state
machine, history, audit). The mix: Checkout completions for pending orders, expirations of
others, price and product updates arriving out of order, and ``--duplicates`` of them sent
again. Printed: events/s for storing, for processing, and end to end; then a loss check (every
distinct event stored once and processed, every completed order paid exactly once).

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
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

BENCH_DATABASE = "adminsite_bench_webhooks"
SECRET = "whsec_bench_0d5e"  # noqa: S105 - the benchmark signs and checks its own events


def bench_database_url(name: str) -> str:
    base = os.environ.get("DATABASE_URL", "")
    if not base:
        from adminsite import devservices

        base = devservices.ensure_postgres()
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{name}"))


def ensure_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def sign(payload: bytes, timestamp: int) -> str:
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def setup(args):
    url = bench_database_url(BENCH_DATABASE)
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["STRIPE_WEBHOOK_SECRET"] = SECRET
    os.environ["STRIPE_SECRET_KEY"] = ""  # processing must not call Stripe
    # Tasks queued by the view go under a prefix of this run's own, which no worker consumes:
    # this process runs the task code itself.
    os.environ["REDIS_KEY_PREFIX"] = f"bench-webhooks-{os.getpid()}:"
    os.environ["CONN_MAX_AGE"] = "86400"
    import django

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


def _in_processes(processes: int, target, chunks: list) -> float:
    """Run ``target(chunk, start_event)`` in ``processes`` forked processes (as gunicorn or
    Celery prefork children would), released together; returns the wall time."""
    import multiprocessing

    from django.db import connections

    connections.close_all()  # each child opens its own connection
    context = multiprocessing.get_context("fork")
    start_event = context.Event()
    children = [
        context.Process(target=target, args=(chunk, start_event)) for chunk in chunks[:processes]
    ]
    for child in children:
        child.start()
    time.sleep(0.5)  # let every child finish starting before the clock runs
    started = time.perf_counter()
    start_event.set()
    for child in children:
        child.join()
    return time.perf_counter() - started


def _post_chunk(bodies: list[bytes], start_event) -> None:
    from django.test import Client

    client = Client()
    start_event.wait()
    failures = 0
    for body in bodies:
        response = client.post(
            "/stripe/webhook", data=body, content_type="application/json",
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


def process_all(processes: int) -> float:
    return _in_processes(processes, _drain, [None] * processes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=4000, help="distinct events (default 4000)")
    parser.add_argument("--duplicates", type=float, default=0.1, help="share sent twice (0.1)")
    parser.add_argument("--processes", type=int, default=4, help="concurrent senders / workers (4)")
    args = parser.parse_args()
    setup(args)

    from django.db.models import Count

    from shop.models import Order, OrderEvent, WebhookEvent

    orders, prices, products = make_data(args.events)
    events, completed = build_events(args.events, args.duplicates, orders, prices, products)
    sent = len(events)
    print(
        f"{sent} deliveries: {args.events} distinct events + {sent - args.events} duplicates, {args.processes} processes"
    )

    post_seconds = post_all(events, args.processes)
    stored = WebhookEvent.objects.count()
    print(
        f"  stored    {sent / post_seconds:8.0f} deliveries/s  ({post_seconds:.2f} s, {stored} rows)"
    )
    process_seconds = process_all(args.processes)
    print(f"  processed {stored / process_seconds:8.0f} events/s      ({process_seconds:.2f} s)")
    total = post_seconds + process_seconds
    print(f"  end to end {sent / total:7.0f} deliveries/s stored and processed  (target ≥ 500)")

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
    lost = args.events - stored
    unprocessed = by_status.get("received", 0) + by_status.get("failed", 0)
    print(f"  events by status: {by_status}")
    print(
        f"  loss check: {lost} distinct events not stored, {unprocessed} not processed, "
        f"{paid}/{completed} completed orders paid, {paid_steps} paid transitions, "
        f"{duplicates_paid} orders paid twice"
    )
    ok = lost == 0 and unprocessed == 0 and paid == completed == paid_steps and not duplicates_paid
    print("  no loss" if ok else "  LOSS DETECTED")


if __name__ == "__main__":
    main()
