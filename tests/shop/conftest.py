"""Fixtures of the shop tests: a local fake Stripe the real SDK talks to, Stripe configured
to use it, customers and staff, and a way to make paid orders through the real flow."""

from __future__ import annotations

import pytest

from adminsite import roles
from shop import services, tasks
from shop.models import Order, WebhookEvent
from tests.factories import CustomerFactory, StaffFactory
from tests.roles import role_users  # noqa: F401 - a fixture, shared with this folder's tests
from tests.shop import stripe_events
from tests.shop.fake_stripe import FakeStripeServer


@pytest.fixture
def stripe_server():
    with FakeStripeServer() as server:
        yield server


@pytest.fixture
def fake_stripe(stripe_server, settings):
    """Stripe configured against the local fake; returns the fake's state and controls."""
    settings.STRIPE_SECRET_KEY = "sk_test_local_fake"
    settings.STRIPE_API_BASE = stripe_server.url
    settings.STRIPE_WEBHOOK_SECRET = stripe_events.WEBHOOK_SECRET
    return stripe_server.fake


@pytest.fixture
def no_stripe(settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_API_BASE = ""
    settings.STRIPE_WEBHOOK_SECRET = stripe_events.WEBHOOK_SECRET


@pytest.fixture
def customer(db):
    return CustomerFactory(first_name="Maria", last_name="Garcia", email="maria@example.com")


@pytest.fixture
def other_customer(db):
    return CustomerFactory()


@pytest.fixture
def admin_user(db):
    return StaffFactory(role=roles.ADMIN)


@pytest.fixture
def lead(db):
    return StaffFactory(role=roles.SUPPORT_LEAD)


@pytest.fixture
def catalogue(fake_stripe, db):
    """Two products in Stripe (a USD plan and a one-time add-on) mirrored locally by a sync."""
    plan = fake_stripe.add_product(id="prod_team", name="Team plan")
    addon = fake_stripe.add_product(id="prod_storage", name="Extra storage")
    fake_stripe.add_price(plan, id="price_team", unit_amount=4900)
    fake_stripe.add_price(addon, id="price_storage", unit_amount=1999)
    services.sync_catalogue(trigger="command")
    return {"plan": plan, "addon": addon}


def deliver(client, evt: dict) -> WebhookEvent | None:
    """Post a signed event and run the processing task on it, as the worker would."""
    response = stripe_events.post(client, evt)
    assert response.status_code == 200, response.content
    stored = WebhookEvent.objects.filter(stripe_id=evt["id"]).first()
    if stored is not None:
        tasks.process_webhook_event.apply(args=[stored.pk])
        stored.refresh_from_db()
    return stored


@pytest.fixture
def checkout_order(client, customer, catalogue, fake_stripe):
    """``checkout_order(items={"price_team": 1})`` → a pending order with its Checkout
    Session, made through the cart and checkout pages."""
    from shop.models import Price

    def make(items=None, *, user=None):
        user = user or customer
        client.force_login(user)
        for stripe_id, quantity in (items or {"price_team": 1}).items():
            price = Price.objects.get(stripe_id=stripe_id)
            response = client.post("/shop/cart/add/", {"price": price.pk, "quantity": quantity})
            assert response.status_code == 303, response.content
        response = client.post("/shop/checkout/")
        assert response.status_code == 303, response.content.decode()[:2000]
        return Order.objects.filter(customer=user).latest("pk")

    return make


@pytest.fixture
def paid_order(client, checkout_order, fake_stripe):
    """``paid_order()`` → an order paid through Checkout and confirmed by its webhook."""

    def make(items=None, *, user=None):
        order = checkout_order(items, user=user)
        session = fake_stripe.complete_session(order.stripe_checkout_session_id)
        deliver(client, stripe_events.event("checkout.session.completed", session))
        order.refresh_from_db()
        assert order.status == "paid"
        return order

    return make
