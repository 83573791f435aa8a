"""The customer's side: cart (anonymous and signed in, merged at sign-in), checkout through a
Stripe Checkout Session, Stripe failing, prices archived in the cart, payment confirmed only
by webhooks, and the revenue metric."""

from __future__ import annotations

import threading

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client

from audit.models import AuditEntry
from monitoring.metrics import decode_entry, flush_buffer, stream_key
from shop import services, tasks
from shop.models import CartItem, Order, OrderEvent, Price, WebhookEvent
from tests.factories import PASSWORD, CustomerFactory
from tests.shop import stripe_events
from tests.shop.conftest import deliver

pytestmark = pytest.mark.django_db


def price(stripe_id: str) -> Price:
    return Price.objects.get(stripe_id=stripe_id)


def revenue_points() -> list[tuple[float, str]]:
    flush_buffer()
    client = redis.Redis.from_url(settings.REDIS_URL)
    points = []
    for _id, fields in client.xrange(stream_key()):
        for name, value, _stamp, tags in decode_entry(fields[b"p"].decode()):
            if name == "revenue_cents":
                points.append((value, tags))
    return points


# --- catalogue and cart ------------------------------------------------------------------------


def test_the_catalogue_shows_products_on_sale_only(client, catalogue, fake_stripe):
    fake_stripe.add_price(catalogue["plan"], id="price_old", unit_amount=3900, active=False)
    services.sync_catalogue(trigger="command")
    response = client.get("/shop/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Team plan" in page and "$49.00" in page and "$19.99" in page
    assert "$39.00" not in page  # archived


def test_anonymous_cart_lives_in_the_session(client, catalogue):
    response = client.post("/shop/cart/add/", {"price": price("price_team").pk, "quantity": 2})
    assert response.status_code == 303
    client.post("/shop/cart/add/", {"price": price("price_storage").pk})
    page = client.get("/shop/cart/").content.decode()
    assert "$98.00" in page and "$117.99" in page
    assert not CartItem.objects.exists()


def test_cart_add_change_remove_for_a_customer(client, customer, catalogue):
    client.force_login(customer)
    team = price("price_team")
    client.post("/shop/cart/add/", {"price": team.pk})
    client.post("/shop/cart/add/", {"price": team.pk})
    assert CartItem.objects.get().quantity == 2
    assert client.post("/shop/cart/update/", {"price": team.pk, "quantity": 5}).status_code == 303
    assert CartItem.objects.get().quantity == 5
    assert client.post("/shop/cart/update/", {"price": team.pk, "remove": "1"}).status_code == 303
    assert not CartItem.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"price": "abc"}, "Enter a whole number"),
        ({"price": 999999}, "not in the catalogue"),
        ({"quantity": 1}, "Choose a product"),
    ],
)
def test_bad_cart_input_is_a_clear_400(client, customer, catalogue, data, message):
    client.force_login(customer)
    response = client.post("/shop/cart/add/", data)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_quantity_out_of_range_is_refused(client, customer, catalogue):
    client.force_login(customer)
    team = price("price_team")
    client.post("/shop/cart/add/", {"price": team.pk})
    response = client.post("/shop/cart/update/", {"price": team.pk, "quantity": 100})
    assert response.status_code == 400
    assert "At most 99" in response.content.decode()
    assert CartItem.objects.get().quantity == 1


def test_the_anonymous_cart_merges_into_the_customers_at_login(client, catalogue):
    customer = CustomerFactory(username="merge.me")
    with_account = Client()
    with_account.force_login(customer)
    with_account.post("/shop/cart/add/", {"price": price("price_team").pk, "quantity": 1})

    client.post("/shop/cart/add/", {"price": price("price_team").pk, "quantity": 2})
    client.post("/shop/cart/add/", {"price": price("price_storage").pk})
    response = client.post("/accounts/login/", {"username": "merge.me", "password": PASSWORD})
    assert response.status_code == 302
    items = {i.price.stripe_id: i.quantity for i in CartItem.objects.select_related("price")}
    assert items == {"price_team": 3, "price_storage": 1}
    assert services.SESSION_CART_KEY not in client.session


# --- checkout --------------------------------------------------------------------------------------


def test_checkout_makes_a_pending_order_and_a_session(
    client, customer, checkout_order, fake_stripe
):
    order = checkout_order({"price_team": 2, "price_storage": 1})
    assert order.status == "pending"
    assert order.amount_total == 2 * 4900 + 1999 and order.currency == "usd"
    lines = {(line.product_name, line.unit_amount, line.quantity) for line in order.lines.all()}
    assert lines == {("Team plan", 4900, 2), ("Extra storage", 1999, 1)}
    call = fake_stripe.calls("POST", "/v1/checkout/sessions")[-1]
    assert call["headers"]["idempotency-key"] == order.checkout_idempotency_key
    assert call["params"]["client_reference_id"] == str(order.pk)
    assert call["params"]["line_items"] == [
        {"price": "price_team", "quantity": "2"},
        {"price": "price_storage", "quantity": "1"},
    ]
    assert call["params"]["success_url"].endswith(f"/shop/orders/{order.pk}/?checkout=success")
    assert (
        order.stripe_checkout_session_id
        == fake_stripe.sessions[order.stripe_checkout_session_id]["id"]
    )
    # The cart stays until the payment is confirmed (the customer may come back from Stripe).
    assert CartItem.objects.count() == 2
    assert list(order.events.values_list("to_status", flat=True)) == ["pending", "pending"]
    assert AuditEntry.objects.filter(event="order.created", object_id=order.pk).exists()


def test_paying_again_for_the_same_cart_goes_to_the_same_open_checkout(
    client, customer, checkout_order, fake_stripe
):
    order = checkout_order({"price_team": 2})
    sessions = len(fake_stripe.calls("POST", "/v1/checkout/sessions"))
    again = client.post("/shop/checkout/")  # a double click, a reload, a second tab
    assert again.status_code == 303 and again["Location"] == order.checkout_url
    assert Order.objects.filter(customer=customer).count() == 1
    assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == sessions
    assert AuditEntry.objects.filter(event="order.created").count() == 1

    # A changed cart is another order, with a session of its own.
    client.post("/shop/cart/add/", {"price": price("price_storage").pk})
    assert client.post("/shop/checkout/").status_code == 303
    second = Order.objects.filter(customer=customer).latest("pk")
    assert second.pk != order.pk and second.lines.count() == 2
    assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == sessions + 1


def test_an_old_open_checkout_is_not_reused(client, customer, checkout_order, fake_stripe):
    order = checkout_order()
    Order.objects.filter(pk=order.pk).update(
        created_at=order.created_at - services.REUSE_CHECKOUT_FOR
    )
    assert client.post("/shop/checkout/").status_code == 303
    assert Order.objects.filter(customer=customer).count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_pay_clicks_at_once_make_one_order(fake_stripe, catalogue):
    customer = CustomerFactory()
    first = Client()
    first.force_login(customer)
    first.post("/shop/cart/add/", {"price": price("price_team").pk})
    second = Client()
    second.force_login(customer)
    barrier = threading.Barrier(2)
    responses = []

    def pay(client):
        try:
            barrier.wait()
            responses.append(client.post("/shop/checkout/"))
        finally:
            connection.close()

    threads = [threading.Thread(target=pay, args=[c]) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    order = Order.objects.get(customer=customer)
    assert [r.status_code for r in responses] == [303, 303]
    assert {r["Location"] for r in responses} == {order.checkout_url}
    assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == 1


def test_the_snapshot_does_not_follow_catalogue_changes(client, checkout_order, fake_stripe):
    order = checkout_order()
    product = fake_stripe.products["prod_team"]
    deliver(
        client,
        stripe_events.event(
            "product.updated", {**product, "name": "Renamed plan"}, created=product["updated"] + 10
        ),
    )
    assert order.lines.get().product_name == "Team plan"


@pytest.mark.parametrize("status", [500, 503])
def test_stripe_failing_at_checkout_is_a_clear_page_and_the_cart_is_kept(
    client, customer, catalogue, fake_stripe, status
):
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    fake_stripe.fail("/v1/checkout/sessions", status=status)
    response = client.post("/shop/checkout/")
    assert response.status_code == 503
    page = response.content.decode()
    assert "We could not start the payment" in page
    assert f"HTTP {status}" in page and "your cart is unchanged" in page
    assert CartItem.objects.count() == 1
    order = Order.objects.get()
    assert order.status == "canceled"
    assert "could not be started" in order.events.last().note


def test_stripe_timing_out_at_checkout(client, customer, catalogue, fake_stripe, settings):
    settings.STRIPE_TIMEOUT_SECONDS = 1
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    fake_stripe.stall("/v1/checkout/sessions", 3, times=3)  # the first call and both retries
    response = client.post("/shop/checkout/")
    assert response.status_code == 503
    assert "did not answer in time" in response.content.decode()
    assert CartItem.objects.count() == 1
    calls = fake_stripe.calls("POST", "/v1/checkout/sessions")
    assert len(calls) == 3
    assert len({call["headers"]["idempotency-key"] for call in calls}) == 1


def test_one_timeout_is_retried_with_the_same_idempotency_key(
    client, customer, catalogue, fake_stripe, settings
):
    settings.STRIPE_TIMEOUT_SECONDS = 1
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    fake_stripe.stall("/v1/checkout/sessions", 3, times=1)
    response = client.post("/shop/checkout/")
    assert response.status_code == 303
    assert response["Location"].startswith("https://checkout.stripe.com/c/pay/cs_")
    keys = {
        c["headers"]["idempotency-key"] for c in fake_stripe.calls("POST", "/v1/checkout/sessions")
    }
    assert keys == {Order.objects.get().checkout_idempotency_key}


def test_a_price_archived_while_in_the_cart_is_told_at_checkout(
    client, customer, catalogue, fake_stripe
):
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    fake_stripe.prices["price_team"]["active"] = False  # archived in Stripe's dashboard
    deliver(client, stripe_events.event("price.updated", fake_stripe.prices["price_team"]))
    page = client.get("/shop/checkout/")
    assert page.status_code == 200
    assert "Team plan ($49.00) is no longer sold" in page.content.decode()
    response = client.post("/shop/checkout/")
    assert response.status_code == 400
    assert "is no longer sold" in response.content.decode()
    assert not Order.objects.exists()
    assert not fake_stripe.calls("POST", "/v1/checkout/sessions")
    assert CartItem.objects.count() == 1


def test_a_price_archived_only_in_stripe_is_refused_by_stripe_clearly(
    client, customer, catalogue, fake_stripe
):
    """The webhook has not arrived yet: Stripe refuses the inactive price, and says so."""
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    fake_stripe.prices["price_team"]["active"] = False
    response = client.post("/shop/checkout/")
    assert response.status_code == 400
    assert "Stripe refused this checkout" in response.content.decode()
    assert "inactive" in response.content.decode()
    assert CartItem.objects.count() == 1


def test_mixed_currencies_are_refused(client, customer, catalogue, fake_stripe):
    fake_stripe.add_price(
        catalogue["addon"], id="price_storage_jpy", unit_amount=3000, currency="jpy"
    )
    services.sync_catalogue(trigger="command")
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    client.post("/shop/cart/add/", {"price": price("price_storage_jpy").pk})
    response = client.post("/shop/checkout/")
    assert response.status_code == 400
    assert "mixes currencies (JPY, USD)" in response.content.decode()


def test_without_stripe_keys_checkout_explains(client, customer, no_stripe):
    from shop.seed import DEMO_PRODUCTS

    services.seed_demo_catalogue(DEMO_PRODUCTS)
    client.force_login(customer)
    shop = client.get("/shop/").content.decode()
    assert "Starter plan" in shop and "demo catalogue" in shop
    assert "¥3,200" in shop  # zero-decimal currency
    client.post("/shop/cart/add/", {"price": price("price_demo_storage").pk})
    page = client.get("/shop/checkout/")
    assert page.status_code == 200 and "Stripe is not configured" in page.content.decode()
    response = client.post("/shop/checkout/")
    assert response.status_code == 503
    assert "Payments are not set up" in response.content.decode()
    assert not Order.objects.exists()


# --- payment by webhook ----------------------------------------------------------------------------


def test_only_the_completed_webhook_marks_paid_once(
    client, customer, checkout_order, fake_stripe, django_capture_on_commit_callbacks
):
    order = checkout_order()
    assert Order.objects.get(pk=order.pk).status == "pending"  # the redirect alone pays nothing
    session = fake_stripe.complete_session(order.stripe_checkout_session_id)
    evt = stripe_events.event("checkout.session.completed", session)
    with django_capture_on_commit_callbacks(execute=True):
        deliver(client, evt)
    deliver(client, evt)  # redelivered
    deliver(client, stripe_events.event("checkout.session.async_payment_succeeded", session))
    order.refresh_from_db()
    assert order.status == "paid"
    assert order.stripe_payment_intent_id == session["payment_intent"]
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    assert AuditEntry.objects.filter(event="order.paid", object_id=order.pk).count() == 1
    assert not CartItem.objects.exists()  # what was bought left the cart
    assert (4900.0, '{"currency":"usd","kind":"order"}') in revenue_points()
    page = client.get(f"/shop/orders/{order.pk}/?checkout=success").content.decode()
    assert "Your payment was received" in page


def test_an_asynchronous_payment_waits_then_succeeds_or_fails(client, checkout_order, fake_stripe):
    first = checkout_order()
    session = {
        **fake_stripe.sessions[first.stripe_checkout_session_id],
        "status": "complete",
        "payment_status": "unpaid",
        "payment_intent": "pi_async_1",
    }
    deliver(client, stripe_events.event("checkout.session.completed", session))
    first.refresh_from_db()
    assert first.status == "pending" and first.stripe_payment_intent_id == "pi_async_1"
    deliver(
        client,
        stripe_events.event(
            "checkout.session.async_payment_succeeded", {**session, "payment_status": "paid"}
        ),
    )
    first.refresh_from_db()
    assert first.status == "paid"

    second = checkout_order()
    session = {
        **fake_stripe.sessions[second.stripe_checkout_session_id],
        "payment_status": "unpaid",
    }
    deliver(client, stripe_events.event("checkout.session.async_payment_failed", session))
    second.refresh_from_db()
    assert second.status == "canceled"


def test_an_expired_session_expires_the_order(client, checkout_order, fake_stripe):
    order = checkout_order()
    session = {**fake_stripe.sessions[order.stripe_checkout_session_id], "status": "expired"}
    deliver(client, stripe_events.event("checkout.session.expired", session))
    order.refresh_from_db()
    assert order.status == "expired" and order.closed_at is not None
    assert CartItem.objects.count() == 1  # nothing bought: the cart stays


@pytest.mark.django_db(transaction=True)
def test_two_webhooks_for_one_order_at_the_same_moment_pay_it_once(fake_stripe, catalogue):
    customer = CustomerFactory()
    client = Client()
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    client.post("/shop/checkout/")
    order = Order.objects.get()
    session = fake_stripe.complete_session(order.stripe_checkout_session_id)
    events = [
        stripe_events.event("checkout.session.completed", session),
        stripe_events.event("checkout.session.async_payment_succeeded", session),
    ]
    for evt in events:
        assert stripe_events.post(client, evt).status_code == 200
    ids = list(WebhookEvent.objects.order_by("pk").values_list("pk", flat=True))
    barrier = threading.Barrier(len(ids))
    errors = []

    def run(event_id):
        try:
            barrier.wait()
            services.process_event(event_id)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=[pk]) for pk in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    order.refresh_from_db()
    assert order.status == "paid"
    assert OrderEvent.objects.filter(order=order, to_status="paid").count() == 1
    results = sorted(WebhookEvent.objects.values_list("result", flat=True))
    assert results == [
        f"Order #{order.pk} already paid; nothing to change.",
        f"Order #{order.pk} paid.",
    ]


@pytest.mark.django_db(transaction=True)
def test_the_same_event_posted_twice_at_once_is_stored_once(fake_stripe):
    evt = stripe_events.event(
        "product.created", {"id": "prod_race", "object": "product", "name": "Race"}
    )
    barrier = threading.Barrier(4)
    codes = []

    def post():
        barrier.wait()
        codes.append(stripe_events.post(Client(), evt).status_code)
        connection.close()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 4
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_worker_processes_a_delivered_event(celery_worker, fake_stripe, catalogue):
    from tests.processes import wait_until

    customer = CustomerFactory()
    client = Client()
    client.force_login(customer)
    client.post("/shop/cart/add/", {"price": price("price_team").pk})
    client.post("/shop/checkout/")
    order = Order.objects.get()
    session = fake_stripe.complete_session(order.stripe_checkout_session_id)
    assert (
        stripe_events.post(
            client, stripe_events.event("checkout.session.completed", session)
        ).status_code
        == 200
    )
    wait_until(
        lambda: Order.objects.get(pk=order.pk).status == "paid",
        timeout=30,
        what="order paid by the worker",
    )
    assert tasks.process_webhook_event.name == "shop.process_webhook_event"
