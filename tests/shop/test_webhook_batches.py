"""Stored Stripe events processed in batches (``services.process_received``, what the drain task
runs): catalogue rows locked and written together, the single path for what needs more, paid
orders leaving carts, a failing event alone, and batches drained side by side."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from shop import services
from shop.models import CartItem, Order, OrderEvent, Price, Product, WebhookEvent
from tests.factories import CustomerFactory
from tests.shop import stripe_events

pytestmark = pytest.mark.django_db

AT = 1_760_000_000


def product_obj(stripe_id: str, **overrides) -> dict:
    return {"id": stripe_id, "object": "product", "name": stripe_id, "active": True, **overrides}


def price_obj(stripe_id: str, product: str, **overrides) -> dict:
    obj = {
        "id": stripe_id,
        "object": "price",
        "active": True,
        "currency": "usd",
        "unit_amount": 2500,
        "product": product,
        "nickname": "",
        "recurring": None,
    }
    return {**obj, **overrides}


def post_all(client, events: list[dict]) -> None:
    for evt in events:
        assert stripe_events.post(client, evt).status_code == 200


def store_catalogue(client, count: int) -> None:
    """``count`` products with a price each, stored by their ``created`` events at ``AT``."""
    post_all(
        client,
        [
            stripe_events.event("product.created", product_obj(f"prod_{n}"), created=AT)
            for n in range(count)
        ]
        + [
            stripe_events.event("price.created", price_obj(f"price_{n}", f"prod_{n}"), created=AT)
            for n in range(count)
        ],
    )
    services.process_received()


def updates(count: int, *, label: str, created: int) -> list[dict]:
    return [
        stripe_events.event(
            "product.updated", product_obj(f"prod_{n}", name=f"{label} {n}"), created=created
        )
        for n in range(count)
    ] + [
        stripe_events.event(
            "price.updated",
            price_obj(f"price_{n}", f"prod_{n}", nickname=f"{label} {n}"),
            created=created,
        )
        for n in range(count)
    ]


def results() -> dict[str, str]:
    return dict(WebhookEvent.objects.values_list("stripe_id", "result"))


# --- catalogue -----------------------------------------------------------------------------------


def test_stored_catalogue_rows_are_updated_together_in_a_fixed_number_of_queries(client, no_stripe):
    store_catalogue(client, 4)
    post_all(client, updates(2, label="First", created=AT + 10))
    with CaptureQueriesContext(connection) as two:
        assert len(services.process_received()) == 4
    post_all(client, updates(4, label="Second", created=AT + 20))
    with CaptureQueriesContext(connection) as four:
        assert len(services.process_received()) == 8
    assert len(four) == len(two)
    assert sorted(Product.objects.values_list("name", "stripe_version")) == [
        (f"Second {n}", AT + 20) for n in range(4)
    ]
    prices = Price.objects.select_related("product").order_by("stripe_id")
    assert [(p.nickname, p.product.stripe_id, p.unit_amount) for p in prices] == [
        (f"Second {n}", f"prod_{n}", 2500) for n in range(4)
    ]
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert "Price price_3: updated." in results().values()


def test_older_and_unchanged_events_in_a_batch(client, no_stripe):
    store_catalogue(client, 2)
    older = stripe_events.event(
        "price.updated", price_obj("price_0", "prod_0", nickname="Older"), created=AT - 5
    )
    same = stripe_events.event("product.updated", product_obj("prod_1"), created=AT + 5)
    post_all(client, [older, same])
    services.process_received()
    assert results()[older["id"]] == "Price price_0: stale."
    assert results()[same["id"]] == "Product prod_1: unchanged."
    assert Price.objects.get(stripe_id="price_0").nickname == ""
    assert Product.objects.get(stripe_id="prod_1").stripe_version == AT + 5


def test_a_batch_creates_what_is_not_stored_yet(client, no_stripe):
    store_catalogue(client, 1)
    new_product = stripe_events.event("product.created", product_obj("prod_new"), created=AT)
    # Its product arrives in no event: a placeholder row is made for it, as outside a batch.
    orphan = stripe_events.event(
        "price.created", price_obj("price_orphan", "prod_unknown"), created=AT
    )
    update = stripe_events.event(
        "price.updated", price_obj("price_0", "prod_0", nickname="Kept"), created=AT + 1
    )
    post_all(client, [new_product, orphan, update])
    services.process_received()
    assert results()[new_product["id"]] == "Product prod_new: created."
    assert results()[orphan["id"]] == "Price price_orphan: created."
    assert results()[update["id"]] == "Price price_0: updated."
    assert Price.objects.get(stripe_id="price_orphan").product.stripe_id == "prod_unknown"
    assert Price.objects.get(stripe_id="price_0").nickname == "Kept"


def test_an_event_of_the_same_second_in_a_batch_is_checked_with_the_api(client, fake_stripe):
    product = fake_stripe.add_product(id="prod_same", name="Truth from the API")
    at = int(time.time())
    post_all(client, [stripe_events.event("product.created", {**product, "name": "A"}, created=at)])
    services.process_received()
    post_all(client, [stripe_events.event("product.updated", {**product, "name": "B"}, created=at)])
    services.process_received()
    assert Product.objects.get(stripe_id="prod_same").name == "Truth from the API"
    assert len(fake_stripe.calls("GET", "/v1/products/prod_same")) == 1


def test_a_failing_update_of_a_stored_price_fails_alone(
    client, no_stripe, django_capture_on_commit_callbacks
):
    store_catalogue(client, 2)
    good = stripe_events.event(
        "price.updated", price_obj("price_0", "prod_0", nickname="Good"), created=AT + 1
    )
    # The database refuses this currency: the batch's single UPDATE fails with it.
    bad = stripe_events.event(
        "price.updated", price_obj("price_1", "prod_1", currency="US$"), created=AT + 1
    )
    post_all(client, [good, bad])
    with django_capture_on_commit_callbacks() as callbacks:
        taken = dict(services.process_received())
    assert sorted(taken.values()) == ["failed", "processed"]
    statuses = dict(WebhookEvent.objects.values_list("stripe_id", "status"))
    assert (statuses[good["id"]], statuses[bad["id"]]) == ("processed", "failed")
    assert len(callbacks) == 1  # the failed one is retried alone
    assert Price.objects.get(stripe_id="price_0").nickname == "Good"
    assert Price.objects.get(stripe_id="price_1").currency == "usd"


# --- orders ----------------------------------------------------------------------------------------


def test_paying_in_a_batch_clears_only_what_each_customer_bought(
    client, customer, other_customer, checkout_order, fake_stripe
):
    order = checkout_order({"price_team": 1})
    storage = Price.objects.get(stripe_id="price_storage")
    team = Price.objects.get(stripe_id="price_team")
    client.post("/shop/cart/add/", {"price": storage.pk})  # added after the checkout
    client.force_login(other_customer)
    client.post("/shop/cart/add/", {"price": team.pk})  # the same price, another customer
    session = fake_stripe.complete_session(order.stripe_checkout_session_id)
    post_all(client, [stripe_events.event("checkout.session.completed", session)])
    services.process_received()
    order.refresh_from_db()
    assert order.status == "paid"
    assert set(CartItem.objects.values_list("cart__user", "price__stripe_id")) == {
        (customer.pk, "price_storage"),
        (other_customer.pk, "price_team"),
    }


@pytest.mark.django_db(transaction=True)
def test_batches_drained_side_by_side_process_every_event_once(fake_stripe, catalogue):
    client = Client()
    orders = []
    for _ in range(3):
        client.force_login(CustomerFactory())
        client.post("/shop/cart/add/", {"price": Price.objects.get(stripe_id="price_team").pk})
        client.post("/shop/checkout/")
        orders.append(Order.objects.latest("pk"))
    later = int(time.time()) + 100  # newer than the synced rows: no API check needed
    events = []
    for n, order in enumerate(orders):
        session = fake_stripe.complete_session(order.stripe_checkout_session_id)
        events += [
            stripe_events.event("checkout.session.completed", session, created=later + n),
            stripe_events.event("checkout.session.expired", session, created=later + n + 1),
        ]
    for n in range(12):
        for stripe_id, product, amount in (
            ("price_team", "prod_team", 4900),
            ("price_storage", "prod_storage", 1999),
        ):
            events.append(
                stripe_events.event(
                    "price.updated",
                    price_obj(stripe_id, product, nickname=f"v{n}", unit_amount=amount),
                    created=later + n,
                )
            )
        events.append(
            stripe_events.event(
                "product.updated", product_obj("prod_team", name=f"Team v{n}"), created=later + n
            )
        )
    # The two threads below are this test's drains: with the drain flag set, storing queues no
    # drain task that a worker of the session could run beside them (holding rows they skip).
    flag = services._redis()
    flag.set(services.drain_key(), 1, ex=60)
    try:
        post_all(client, events)
    finally:
        flag.delete(services.drain_key())
    barrier = threading.Barrier(2)
    errors = []

    def drain():
        try:
            barrier.wait()
            while services.process_received(limit=5):
                pass
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert WebhookEvent.objects.count() == len(events)
    for order in orders:
        order.refresh_from_db()
        assert order.status == "paid"  # a later "expired" never undoes a payment
        assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    assert Product.objects.get(stripe_id="prod_team").name == "Team v11"
    assert set(Price.objects.values_list("nickname", flat=True)) == {"v11"}
