"""Refunds from the console through Stripe's Refund API, and reconciliation from
``charge.refunded`` / ``refund.updated``."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from shop import services
from shop.models import Order, OrderEvent, Refund
from tests.shop import stripe_events
from tests.shop.conftest import deliver

pytestmark = pytest.mark.django_db


def refund(client, order, **data):
    return client.post(f"/admin/shop/orders/{order.pk}/refund", data)


def test_a_partial_then_the_rest(client, admin_user, paid_order, fake_stripe):
    order = paid_order({"price_team": 2})  # $98.00
    client.force_login(admin_user)
    response = refund(client, order, amount="30.50", reason="Charged twice for one seat")
    assert response.status_code == 303
    order.refresh_from_db()
    assert order.status == "partially_refunded" and order.amount_refunded == 3050
    made = Refund.objects.get()
    assert made.status == "succeeded" and made.stripe_refund_id.startswith("re_")
    call = fake_stripe.calls("POST", "/v1/refunds")[-1]
    assert call["headers"]["idempotency-key"] == made.idempotency_key
    assert call["params"]["amount"] == "3050"
    assert call["params"]["payment_intent"] == order.stripe_payment_intent_id
    entry = AuditEntry.objects.get(event="order.refund_requested")
    assert entry.actor_id == admin_user.pk
    assert entry.additional_data["reason"] == "Charged twice for one seat"

    response = refund(client, order, full="on", reason="Customer left")
    assert response.status_code == 303
    order.refresh_from_db()
    assert order.status == "refunded" and order.amount_refunded == 9800
    keys = Refund.objects.values_list("idempotency_key", flat=True)
    assert len(set(keys)) == 2  # one key per attempt
    statuses = list(OrderEvent.objects.filter(order=order).values_list("to_status", flat=True))
    assert statuses[-2:] == ["partially_refunded", "refunded"]


def test_a_refund_above_what_is_left_is_refused_and_nothing_changes(
    client, admin_user, paid_order, fake_stripe
):
    order = paid_order()  # $49.00
    client.force_login(admin_user)
    refund(client, order, amount="40")
    before = (Refund.objects.count(), OrderEvent.objects.count(), AuditEntry.objects.count())
    response = refund(client, order, amount="9.01")
    assert response.status_code == 400
    assert "$9.01 is more than the $9.00 left to refund" in response.content.decode()
    assert (
        Refund.objects.count(),
        OrderEvent.objects.count(),
        AuditEntry.objects.count(),
    ) == before
    assert len(fake_stripe.calls("POST", "/v1/refunds")) == 1
    order.refresh_from_db()
    assert order.amount_refunded == 4000 and order.status == "partially_refunded"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"amount": ""}, "Enter the amount to refund"),
        ({"amount": "abc"}, "is not an amount"),
        ({"amount": "-5"}, "more than zero"),
        ({"amount": "1.234"}, "at most 2 decimal places"),
    ],
)
def test_bad_refund_amounts_are_clear_errors(client, admin_user, paid_order, data, message):
    order = paid_order()
    client.force_login(admin_user)
    response = refund(client, order, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Refund.objects.exists()


def test_stripe_refusing_a_refund_is_kept_as_a_failed_attempt(
    client, admin_user, paid_order, fake_stripe
):
    order = paid_order()
    # Refunded in Stripe's dashboard meanwhile; its event has not arrived yet.
    fake_stripe.payments[order.stripe_payment_intent_id]["refunded"] = 4900
    client.force_login(admin_user)
    response = refund(client, order, amount="10")
    assert response.status_code == 400
    assert "Stripe refused the refund" in response.content.decode()
    attempt = Refund.objects.get()
    assert attempt.status == "failed" and "already been refunded" in attempt.failure_message
    order.refresh_from_db()
    assert order.amount_refunded == 0 and order.status == "paid"


def test_stripe_down_keeps_the_attempt_requested(client, admin_user, paid_order, fake_stripe):
    order = paid_order()
    fake_stripe.fail("/v1/refunds", status=500)
    client.force_login(admin_user)
    response = refund(client, order, amount="10")
    assert response.status_code == 303
    attempt = Refund.objects.get()
    assert attempt.status == "requested"
    # While it is open it holds its amount: no second refund can exceed what is left.
    response = refund(client, order, amount="39.01")
    assert response.status_code == 400


def test_reconciled_from_charge_refunded_made_in_the_dashboard(client, paid_order, fake_stripe):
    order = paid_order()
    payment = fake_stripe.payments[order.stripe_payment_intent_id]
    made = fake_stripe.create_refund(
        {"payment_intent": order.stripe_payment_intent_id, "amount": "1000"}
    )
    charge = fake_stripe.charge_for(order.stripe_payment_intent_id)
    assert charge["amount_refunded"] == payment["refunded"] == 1000
    deliver(client, stripe_events.event("charge.refunded", charge))  # refunds not listed: fetched
    order.refresh_from_db()
    assert order.amount_refunded == 1000 and order.status == "partially_refunded"
    assert Refund.objects.get().stripe_refund_id == made["id"]
    # The refund's own event afterwards changes nothing.
    deliver(client, stripe_events.event("refund.updated", made))
    assert Refund.objects.count() == 1
    order.refresh_from_db()
    assert order.amount_refunded == 1000


def test_refund_status_only_moves_forward(client, paid_order, fake_stripe):
    order = paid_order()
    base = {
        "id": "re_async", "object": "refund", "amount": 4900, "currency": "usd",
        "payment_intent": order.stripe_payment_intent_id, "metadata": {},
    }  # fmt: skip
    deliver(
        client, stripe_events.event("refund.updated", {**base, "status": "succeeded"}, created=2000)
    )
    deliver(
        client, stripe_events.event("refund.created", {**base, "status": "pending"}, created=1000)
    )
    order.refresh_from_db()
    assert Refund.objects.get().status == "succeeded"
    assert order.status == "refunded" and order.amount_refunded == 4900
    # A refund failing after it succeeded (the bank returned it) gives the money back.
    deliver(
        client,
        stripe_events.event(
            "refund.updated",
            {**base, "status": "failed", "failure_reason": "lost_or_stolen_card"},
            created=3000,
        ),
    )
    order.refresh_from_db()
    assert order.amount_refunded == 0
    # ... and the order is paid again, as it was: a step back, kept in its history.
    assert order.status == "paid"
    step = order.events.latest("pk")
    assert (step.from_status, step.to_status) == ("refunded", "paid")
    assert "failed after it had succeeded" in step.note
    assert AuditEntry.objects.filter(event="order.refund_reversed", object_id=order.pk).exists()


def test_one_of_two_refunds_failing_later_leaves_the_order_partly_refunded(
    client, paid_order, fake_stripe
):
    order = paid_order()
    base = {
        "object": "refund", "currency": "usd", "status": "succeeded",
        "payment_intent": order.stripe_payment_intent_id, "metadata": {},
    }  # fmt: skip
    for n, amount in ((1, 900), (2, 4000)):
        deliver(
            client,
            stripe_events.event(
                "refund.created", {**base, "id": f"re_{n}", "amount": amount}, created=1000 + n
            ),
        )
    order.refresh_from_db()
    assert order.status == "refunded" and order.amount_refunded == 4900
    deliver(
        client,
        stripe_events.event(
            "refund.updated",
            {**base, "id": "re_2", "amount": 4000, "status": "failed"},
            created=2000,
        ),
    )
    order.refresh_from_db()
    assert order.status == "partially_refunded" and order.amount_refunded == 900
    assert order.paid_at is not None


def test_a_refund_made_with_a_timeout_is_completed_by_its_event(
    client, admin_user, paid_order, fake_stripe
):
    """Our call timed out but Stripe made the refund: its event finds our attempt by the
    refund_id in the metadata instead of adding a second refund."""
    order = paid_order()
    fake_stripe.fail("/v1/refunds", status=500)
    client.force_login(admin_user)
    refund(client, order, amount="5")
    attempt = Refund.objects.get()
    made = fake_stripe.create_refund(
        {
            "payment_intent": order.stripe_payment_intent_id,
            "amount": "500",
            "metadata": {"order_id": str(order.pk), "refund_id": str(attempt.pk)},
        }
    )
    deliver(client, stripe_events.event("refund.created", made))
    attempt.refresh_from_db()
    assert attempt.stripe_refund_id == made["id"] and attempt.status == "succeeded"
    assert Refund.objects.count() == 1
    order.refresh_from_db()
    assert order.amount_refunded == 500


def test_refunds_need_the_refund_permission(client, lead, paid_order):
    order = paid_order()
    client.force_login(lead)
    assert client.get(f"/admin/shop/orders/{order.pk}/").status_code == 200
    assert refund(client, order, amount="5").status_code == 403
    assert not Refund.objects.exists()


def test_only_paid_orders_can_be_refunded(admin_user, checkout_order):
    order = checkout_order()
    with pytest.raises(services.RefundError, match="only paid orders"):
        services.refund_order(actor=admin_user, order=order, amount=100)
    assert Order.objects.get(pk=order.pk).status == "pending"
