"""The shop console (/admin/shop/), the customer's order pages, the dashboard panel and the
access rules, with query counts bounded whatever the number of rows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEntry
from shop import services
from shop.models import CatalogueSync, Order, Price, WebhookEvent
from tests.factories import CustomerFactory
from tests.roles import STAFF, assert_access_matrix
from tests.shop import stripe_events

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return response.content.decode()


@pytest.fixture
def many_orders(paid_order, checkout_order, customer, other_customer):
    """Seven orders of two customers in several states."""
    orders = [paid_order() for _ in range(3)]
    orders += [paid_order({"price_storage": 2}, user=other_customer)]
    orders += [checkout_order() for _ in range(3)]
    return orders


def test_orders_list_filters_and_totals(client, admin_user, many_orders, other_customer):
    client.force_login(admin_user)
    response = client.get("/admin/shop/")
    assert response.status_code == 200
    assert html(response).count("data-order=") == 7
    totals = response.context["totals"]
    assert totals[0]["label"] == "USD · 7 orders"
    # Paid: 3 × $49.00 + 2 × $19.99; pending: the cart grew by one plan each time ($49, $98, $147).
    assert totals[0]["value"] == "$480.98"
    assert "paid $186.98" in totals[0]["hint"]

    paid = client.get("/admin/shop/?status=paid")
    assert html(paid).count("data-order=") == 4
    by_customer = client.get(f"/admin/shop/?customer={other_customer.username}")
    assert html(by_customer).count("data-order=") == 1
    by_amount = client.get("/admin/shop/?amount_min=39.98&amount_max=45&currency=usd")
    assert html(by_amount).count("data-order=") == 1
    today = timezone.localdate()
    dated = client.get(f"/admin/shop/?date_from={today}&date_to={today}")
    assert html(dated).count("data-order=") == 7
    past = client.get(f"/admin/shop/?date_to={today - timedelta(days=1)}")
    assert "No orders match" in html(past)


def test_orders_list_htmx_partial(client, admin_user, many_orders):
    client.force_login(admin_user)
    response = client.get("/admin/shop/?status=pending", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = html(response)
    assert page.lstrip().startswith('<div id="order-results"')
    assert page.count("data-order=") == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=lost", "Select a valid choice"),
        ("date_from=2026-13-01", "Enter a valid date"),
        ("date_from=2026-05-02&date_to=2026-05-01", "end date is before the start date"),
        ("amount_min=ten", "is not an amount"),
        ("amount_min=50&amount_max=10", "upper amount is below"),
        ("currency=dollars", "three-letter currency code"),
    ],
)
def test_bad_filters_are_named(client, admin_user, query, message):
    client.force_login(admin_user)
    response = client.get(f"/admin/shop/?{query}")
    assert response.status_code == 400
    assert message in html(response)


def test_orders_list_query_count_does_not_grow(
    client, admin_user, paid_order, django_assert_max_num_queries
):
    paid_order()
    client.force_login(admin_user)
    with django_assert_max_num_queries(12) as baseline:
        client.get("/admin/shop/")
    count = len(baseline.captured_queries)
    for _ in range(6):
        paid_order()
    client.force_login(admin_user)
    with django_assert_max_num_queries(count):
        response = client.get("/admin/shop/")
    assert html(response).count("data-order=") == 7


def test_order_page_shows_lines_payment_refunds_history(
    client, admin_user, paid_order, django_assert_max_num_queries
):
    order = paid_order({"price_team": 1, "price_storage": 3})
    client.force_login(admin_user)
    client.post(f"/admin/shop/orders/{order.pk}/refund", {"amount": "5", "reason": "Goodwill"})
    with django_assert_max_num_queries(14):
        response = client.get(f"/admin/shop/orders/{order.pk}/")
    page = html(response)
    assert response.status_code == 200
    for text in (
        "Team plan", "Extra storage", "$59.97", "$108.97", order.stripe_payment_intent_id,
        order.stripe_checkout_session_id, "Goodwill", "Partially refunded", "Payment received",
        'data-testid="refund-form"', "$103.97 left to refund",
    ):  # fmt: skip
        assert text in page, text


def test_order_page_for_a_lead_is_read_only(client, lead, paid_order):
    order = paid_order()
    client.force_login(lead)
    page = html(client.get(f"/admin/shop/orders/{order.pk}/"))
    assert 'data-testid="refund-form"' not in page
    assert 'data-testid="fulfil"' not in page


def test_mark_fulfilled(client, admin_user, paid_order, checkout_order):
    order = paid_order()
    client.force_login(admin_user)
    assert client.post(f"/admin/shop/orders/{order.pk}/fulfil").status_code == 303
    order.refresh_from_db()
    assert order.status == "fulfilled" and order.fulfilled_at
    assert AuditEntry.objects.filter(event="order.fulfilled", actor_id=admin_user.pk).exists()
    pending = checkout_order()
    client.force_login(admin_user)
    response = client.post(f"/admin/shop/orders/{pending.pk}/fulfil", follow=True)
    assert "only paid orders can be marked fulfilled" in html(response)


def test_catalogue_page_shows_sync_status(
    client, admin_user, catalogue, fake_stripe, django_assert_max_num_queries
):
    fake_stripe.add_price(catalogue["plan"], id="price_archived", unit_amount=3900, active=False)
    services.sync_catalogue(trigger="command")
    client.force_login(admin_user)
    with django_assert_max_num_queries(10):
        response = client.get("/admin/shop/catalogue/")
    page = html(response)
    assert "price_archived" in page and "Archived" in page
    assert "Last sync #" in page and "Succeeded" in page
    assert response.context["last_sync"].prices_seen == 3


def test_sync_now_is_queued_and_audited(
    client, admin_user, fake_stripe, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post("/admin/shop/catalogue/sync")
    assert response.status_code == 303
    run = CatalogueSync.objects.get()
    assert (run.trigger, run.requested_by_id, run.status) == ("console", admin_user.pk, "running")
    assert len(callbacks) == 1
    assert AuditEntry.objects.filter(event="shop.sync_requested", actor_id=admin_user.pk).exists()


def test_sync_now_without_stripe_says_why(client, admin_user, no_stripe):
    client.force_login(admin_user)
    response = client.post("/admin/shop/catalogue/sync", follow=True)
    assert "Stripe is not configured" in html(response)
    assert not CatalogueSync.objects.exists()


def test_webhook_events_page_defaults_to_failed(
    client, admin_user, no_stripe, django_assert_max_num_queries
):
    WebhookEvent.objects.create(
        stripe_id="evt_ok", type="product.created", stripe_created=1, payload={}, status="processed"
    )
    WebhookEvent.objects.create(
        stripe_id="evt_bad",
        type="price.created",
        stripe_created=1,
        payload={},
        status="failed",
        last_error="IntegrityError: boom",
        attempts=3,
    )
    client.force_login(admin_user)
    with django_assert_max_num_queries(10):
        response = client.get("/admin/shop/webhooks/")
    page = html(response)
    assert "evt_bad" in page and "evt_ok" not in page and "IntegrityError: boom" in page
    assert 'data-testid="reprocess"' in page
    every = html(client.get("/admin/shop/webhooks/?status="))
    assert "evt_ok" in every and "evt_bad" in every


def test_the_dashboard_panel(client, admin_user, paid_order, no_stripe):
    WebhookEvent.objects.create(
        stripe_id="evt_bad", type="price.created", stripe_created=1, payload={}, status="failed"
    )
    client.force_login(admin_user)
    response = client.get("/admin/panels/shop/")
    assert response.status_code == 200
    page = html(response)
    assert "0 orders today" in page and "1 failed event" in page


def test_the_dashboard_panel_counts_todays_revenue(client, admin_user, paid_order):
    paid_order()
    client.force_login(admin_user)
    page = html(client.get("/admin/panels/shop/"))
    assert "1 order today" in page and "$49.00" in page


# --- customer order pages ----------------------------------------------------------------------


def test_customers_see_only_their_own_orders(
    client, customer, other_customer, paid_order, django_assert_max_num_queries
):
    mine = paid_order()
    theirs = paid_order(user=other_customer)
    client.force_login(customer)
    with django_assert_max_num_queries(8):
        listing = client.get("/shop/orders/")
    assert f'data-order="{mine.pk}"' in html(listing)
    assert f'data-order="{theirs.pk}"' not in html(listing)
    assert client.get(f"/shop/orders/{mine.pk}/").status_code == 200
    assert client.get(f"/shop/orders/{theirs.pk}/").status_code == 404


def test_customer_order_list_query_count_does_not_grow(
    client, customer, paid_order, django_assert_max_num_queries
):
    paid_order()
    client.force_login(customer)
    with django_assert_max_num_queries(10) as baseline:
        client.get("/shop/orders/")
    count = len(baseline.captured_queries)
    for _ in range(5):
        paid_order()
    client.force_login(customer)
    with django_assert_max_num_queries(count):
        client.get("/shop/orders/")


def test_catalogue_and_cart_query_counts(
    client, customer, catalogue, django_assert_max_num_queries
):
    client.force_login(customer)
    with django_assert_max_num_queries(8):
        assert client.get("/shop/").status_code == 200
    client.post("/shop/cart/add/", {"price": Price.objects.get(stripe_id="price_team").pk})
    with django_assert_max_num_queries(8):
        assert client.get("/shop/cart/").status_code == 200


def test_staff_opening_customer_pages_are_sent_to_the_console(client, admin_user, paid_order):
    order = paid_order()
    client.force_login(admin_user)
    assert client.get("/shop/")["Location"] == "/admin/shop/catalogue/"
    assert client.get("/shop/cart/")["Location"] == "/admin/shop/"
    assert client.get(f"/shop/orders/{order.pk}/")["Location"] == f"/admin/shop/orders/{order.pk}/"


def test_the_customer_landing_page_links_the_shop(client, customer):
    client.force_login(customer)
    assert 'href="/shop/"' in html(client.get("/accounts/"))


# --- access ----------------------------------------------------------------------------------


def test_access_to_one_order(client, role_users, paid_order):
    order = paid_order(user=role_users["customer"])
    assert_access_matrix(
        client,
        f"/admin/shop/orders/{order.pk}/",
        {"admin", "lead"},
    )
    assert_access_matrix(
        client,
        f"/shop/orders/{order.pk}/",
        {"customer"},
        expect=dict.fromkeys(STAFF, f"/admin/shop/orders/{order.pk}/"),
    )
    assert_access_matrix(
        client,
        f"/admin/shop/orders/{order.pk}/refund",
        {"admin"},
        method="post",
        data={},
        status=400,
    )
    assert_access_matrix(
        client, f"/admin/shop/orders/{order.pk}/fulfil", {"admin"}, method="post", status=303
    )


def test_a_customer_of_another_account_cannot_reach_an_order(client, paid_order):
    order = paid_order()
    stranger = CustomerFactory()
    other = Client()
    other.force_login(stranger)
    assert other.get(f"/shop/orders/{order.pk}/").status_code == 404
    assert other.get(f"/admin/shop/orders/{order.pk}/").status_code == 302
    assert Order.objects.count() == 1


def test_webhook_events_reprocess_needs_admin(client, lead, no_stripe):
    event = WebhookEvent.objects.create(
        stripe_id="evt_x",
        type="price.created",
        stripe_created=1,
        payload=stripe_events.event("price.created", {"id": "p"}),
        status="failed",
    )
    client.force_login(lead)
    assert client.get("/admin/shop/webhooks/").status_code == 403
    assert client.post(f"/admin/shop/webhooks/{event.pk}/reprocess").status_code == 403
