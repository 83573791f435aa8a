"""POST /stripe/webhook and event processing: signatures, storage once, duplicates, order of
arrival, retries and reprocessing."""

from __future__ import annotations

import json
import time

import pytest
import time_machine
from django.db import DatabaseError, connection

from audit.models import AuditEntry
from shop import services, tasks
from shop.models import Order, OrderEvent, Price, Product, WebhookEvent
from tests.shop import stripe_events
from tests.shop.conftest import deliver

pytestmark = pytest.mark.django_db


def price_obj(**overrides) -> dict:
    obj = {
        "id": "price_new",
        "object": "price",
        "active": True,
        "currency": "usd",
        "unit_amount": 2500,
        "product": "prod_new",
        "nickname": "Monthly",
        "recurring": {"interval": "month", "interval_count": 1},
        "created": 1_760_000_000,
    }
    return {**obj, **overrides}


# --- signatures --------------------------------------------------------------------------------


def test_a_signed_event_is_stored_and_answered_at_once(client, no_stripe):
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product", "name": "A"})
    response = stripe_events.post(client, evt)
    assert response.status_code == 200
    assert response.json() == {"received": True, "event": evt["id"], "duplicate": False}
    stored = WebhookEvent.objects.get()
    assert (stored.stripe_id, stored.type, stored.status) == (
        evt["id"],
        "product.created",
        "received",
    )
    assert stored.payload == evt
    assert stored.object_id == "prod_a"


@pytest.mark.parametrize(
    "header",
    [
        "",  # missing
        "t=1,v1=abc",  # stale and wrong
        "garbage",
        "v1=" + "0" * 64,  # no timestamp
    ],
)
def test_bad_or_missing_signature_is_400_and_nothing_stored(client, no_stripe, header):
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    response = stripe_events.post(client, evt, header=header)
    assert response.status_code == 400
    assert "error" in response.json()
    assert not WebhookEvent.objects.exists()


def test_a_signature_with_another_secret_is_refused(client, no_stripe):
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    response = stripe_events.post(client, evt, secrets=("whsec_someone_else",))
    assert response.status_code == 400
    assert "No v1 signature matches" in response.json()["error"]
    assert not WebhookEvent.objects.exists()


def test_a_tampered_body_is_refused(client, no_stripe):
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    payload = json.dumps(evt).encode()
    header = stripe_events.signature_header(payload)
    response = stripe_events.post(client, payload.replace(b"prod_a", b"prod_b"), header=header)
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_a_stale_timestamp_is_400(client, no_stripe):
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    response = stripe_events.post(client, evt, timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "tolerance 300 s" in response.json()["error"]
    # Within five minutes is accepted.
    response = stripe_events.post(client, evt, timestamp=int(time.time()) - 290)
    assert response.status_code == 200


def test_several_v1_signatures_one_valid_is_accepted(client, no_stripe):
    """While a secret is rolled Stripe signs with the old and the new one."""
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    response = stripe_events.post(
        client, evt, secrets=("whsec_old_rolled", stripe_events.WEBHOOK_SECRET)
    )
    assert response.status_code == 200


def test_two_endpoint_secrets_during_rotation(client, no_stripe, settings):
    settings.STRIPE_WEBHOOK_SECRET = f"whsec_new_one, {stripe_events.WEBHOOK_SECRET}"
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    assert stripe_events.post(client, evt, secrets=("whsec_new_one",)).status_code == 200


def test_without_a_webhook_secret_every_delivery_is_refused(client, no_stripe, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    evt = stripe_events.event("product.created", {"id": "prod_a", "object": "product"})
    response = stripe_events.post(client, evt)
    assert response.status_code == 400
    assert "STRIPE_WEBHOOK_SECRET is not set" in response.json()["error"]


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", json.dumps({"object": "event", "id": "evt_1"}).encode()],
)
def test_signed_but_malformed_bodies_are_400(client, no_stripe, payload):
    response = stripe_events.post(client, payload)
    assert response.status_code == 400
    assert not WebhookEvent.objects.exists()


def test_only_post_is_accepted(client, no_stripe):
    assert client.get("/stripe/webhook").status_code == 405
    assert client.get("/stripe/webhook/").status_code == 405


# --- storing once, processing once -------------------------------------------------------------


def test_the_same_event_twice_is_stored_and_processed_once(client, no_stripe):
    evt = stripe_events.event("price.created", price_obj())
    first = deliver(client, evt)
    again = stripe_events.post(client, evt)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert WebhookEvent.objects.count() == 1
    assert first.status == "processed" and first.attempts == 1
    # The task delivered twice (a broker redelivery) acts once.
    assert tasks.process_webhook_event.apply(args=[first.pk]).get() == "done"
    first.refresh_from_db()
    assert first.attempts == 1
    assert Price.objects.get().unit_amount == 2500


def test_a_burst_of_deliveries_queues_one_drain_that_processes_them_all(client, no_stripe):
    flag = services._redis()
    services.drain_caught_up()  # no drain queued
    events = [
        stripe_events.event(
            "product.created", {"id": f"prod_{n}", "object": "product", "name": f"P{n}"}
        )
        for n in range(5)
    ]
    stripe_events.post(client, events[0])
    assert flag.get(services.drain_key()) == b"1"  # the first delivery queued a drain
    for evt in events[1:]:
        stripe_events.post(client, evt)  # the others find it queued
    assert tasks.process_webhook_events.apply().get() == 5
    assert flag.get(services.drain_key()) is None  # the next delivery queues a new one
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Product.objects.count() == 5


def _product_event(n: int) -> dict:
    return stripe_events.event(
        "product.created", {"id": f"prod_{n}", "object": "product", "name": f"P{n}"}
    )


@pytest.fixture
def drain_queued(client, no_stripe):
    """One event stored, and the flag set as after its delivery queued the drain that the test
    runs itself (with no task really queued, which a worker of the session could take).
    Returns the Redis client holding the flag."""
    flag = services._redis()
    flag.set(services.drain_key(), 1, ex=60)
    stripe_events.post(client, _product_event(0))
    return flag


def test_deliveries_during_a_running_drain_queue_no_other(client, drain_queued, monkeypatch):
    flag = drain_queued
    real_process_received = services.process_received
    flags_seen = []

    def batch_with_a_delivery_meanwhile(**kwargs):
        taken = real_process_received(**kwargs)
        if taken and len(flags_seen) < 2:
            flags_seen.append(flag.get(services.drain_key()))
            stripe_events.post(client, _product_event(len(flags_seen)))
        return taken

    monkeypatch.setattr(services, "process_received", batch_with_a_delivery_meanwhile)
    assert tasks.process_webhook_events.apply().get() == 3
    # The flag stayed set while the drain ran, so those deliveries found it and queued nothing.
    assert flags_seen == [b"1", b"1"]
    assert flag.get(services.drain_key()) is None  # caught up: the next delivery queues one
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_an_event_stored_as_the_drain_catches_up_is_still_processed(
    client, drain_queued, monkeypatch
):
    flag = drain_queued
    real_caught_up = services.drain_caught_up
    late = []

    def delivery_just_before_the_flag_goes():
        if not late:
            # Stored after the drain's last batch came back empty; the delivery finds the flag
            # still set and queues nothing, so this drain must see it.
            late.append(stripe_events.post(client, _product_event(1)))
            assert flag.get(services.drain_key()) == b"1"
        real_caught_up()

    monkeypatch.setattr(services, "drain_caught_up", delivery_just_before_the_flag_goes)
    assert tasks.process_webhook_events.apply().get() == 2
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert Product.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_failing_drain_lets_the_next_delivery_queue_another(drain_queued):
    flag = drain_queued
    # The database ends the drain's session under it (a restart, a failover).
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        other.execute("SELECT pg_terminate_backend(%s)", [backend])
    finally:
        other.close()
    failed = tasks.process_webhook_events.apply()
    connection.close()  # the next use connects again
    assert failed.failed() and isinstance(failed.result, DatabaseError)
    assert flag.get(services.drain_key()) is None  # the next delivery queues a new drain
    # Nothing is lost: that drain processes the stored event.
    again = tasks.process_webhook_events.apply()
    assert again.successful() and again.result == 1
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_a_batch_keeps_the_newest_event_of_each_object(client, no_stripe):
    older = stripe_events.event("price.updated", price_obj(nickname="Older"), created=1_760_000_100)
    newer = stripe_events.event("price.updated", price_obj(nickname="Newer"), created=1_760_000_200)
    stripe_events.post(client, newer)
    stripe_events.post(client, older)  # arrives later, was made earlier
    assert len(services.process_received()) == 2
    assert Price.objects.get().nickname == "Newer"
    results = dict(WebhookEvent.objects.values_list("stripe_id", "result"))
    assert results[older["id"]] == f"Superseded by the newer {newer['id']} in the same batch."


def test_one_bad_event_fails_alone_in_a_batch(
    client, no_stripe, django_capture_on_commit_callbacks
):
    good = stripe_events.event("price.created", price_obj(id="price_good"))
    bad = stripe_events.event("price.created", price_obj(id="price_bad", currency="US$"))
    stripe_events.post(client, good)
    stripe_events.post(client, bad)
    with django_capture_on_commit_callbacks() as callbacks:
        taken = dict(services.process_received())
    statuses = dict(WebhookEvent.objects.values_list("stripe_id", "status"))
    assert statuses == {good["id"]: "processed", bad["id"]: "failed"}
    assert sorted(taken.values()) == ["failed", "processed"]
    assert len(callbacks) == 1  # the failed one is retried alone, with backoff
    assert Price.objects.filter(stripe_id="price_good").exists()


def test_unknown_event_types_are_kept_as_ignored(client, no_stripe):
    stored = deliver(
        client, stripe_events.event("customer.created", {"id": "cus_1", "object": "customer"})
    )
    assert stored.status == "ignored"
    assert "No action" in stored.result


# --- out of order --------------------------------------------------------------------------------


def test_price_updated_before_price_created_keeps_the_newer_state(client, no_stripe):
    created_at = 1_760_000_000
    updated = stripe_events.event(
        "price.updated", price_obj(active=False, nickname="Old monthly"), created=created_at + 60
    )
    created = stripe_events.event("price.created", price_obj(), created=created_at)
    assert deliver(client, updated).result == "Price price_new: created."
    stale = deliver(client, created)
    assert stale.status == "processed" and stale.result == "Price price_new: stale."
    price = Price.objects.get(stripe_id="price_new")
    assert price.active is False and price.nickname == "Old monthly"
    assert price.stripe_version == created_at + 60
    # The product it belongs to exists as a placeholder until its own event arrives.
    product = Product.objects.get(stripe_id="prod_new")
    deliver(
        client,
        stripe_events.event(
            "product.created",
            {"id": "prod_new", "object": "product", "name": "Newsletter add-on", "active": True},
            created=created_at,
        ),
    )
    product.refresh_from_db()
    assert product.name == "Newsletter add-on"


def test_an_event_of_the_same_second_is_checked_with_the_api(client, fake_stripe):
    product = fake_stripe.add_product(id="prod_same", name="Truth from the API")
    at = int(time.time())
    deliver(
        client, stripe_events.event("product.created", {**product, "name": "First"}, created=at)
    )
    deliver(
        client, stripe_events.event("product.updated", {**product, "name": "Second"}, created=at)
    )
    assert Product.objects.get(stripe_id="prod_same").name == "Truth from the API"
    assert len(fake_stripe.calls("GET", "/v1/products/prod_same")) == 1


def test_a_late_expired_event_never_undoes_a_payment(client, paid_order, fake_stripe):
    order = paid_order()
    session = fake_stripe.sessions[order.stripe_checkout_session_id]
    stored = deliver(
        client, stripe_events.event("checkout.session.expired", {**session, "status": "expired"})
    )
    order.refresh_from_db()
    assert order.status == "paid"
    assert "already paid" in stored.result


# --- failures, retries, reprocess ----------------------------------------------------------------


def test_a_failing_event_is_recorded_retried_and_reprocessed(
    client, no_stripe, admin_user, django_capture_on_commit_callbacks
):
    # A price whose product cannot be created: the currency breaks the database's check.
    evt = stripe_events.event("price.created", price_obj(id="price_bad", currency="US$"))
    response = stripe_events.post(client, evt)
    assert response.status_code == 200
    stored = WebhookEvent.objects.get()
    result = tasks.process_webhook_event.apply(args=[stored.pk])
    # Each attempt is recorded on the event; Celery retried it up to its limit (run eagerly
    # here, so the backoff waits are skipped) and it stays failed for someone to look at.
    assert result.state == "FAILURE"
    stored.refresh_from_db()
    assert stored.status == "failed"
    assert stored.attempts == 1 + tasks.process_webhook_event.max_retries
    assert "IntegrityError" in stored.last_error and "shop_price_currency_iso" in stored.last_error

    client.force_login(admin_user)
    page = client.get("/admin/shop/webhooks/")
    assert page.status_code == 200
    assert evt["id"] in page.content.decode()
    # Fixed at the source (here: the stored payload is corrected), reprocessed from the console.
    WebhookEvent.objects.filter(pk=stored.pk).update(
        payload={**stored.payload, "data": {"object": price_obj(id="price_bad")}}
    )
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/admin/shop/webhooks/{stored.pk}/reprocess")
    assert response.status_code == 303
    assert len(callbacks) == 1
    tasks.process_webhook_event.apply(args=[stored.pk])
    stored.refresh_from_db()
    assert stored.status == "processed" and stored.last_error == ""
    assert AuditEntry.objects.filter(event="shop.webhook_reprocessed").count() == 1


def test_events_stuck_in_received_are_requeued(client, no_stripe):
    evt = stripe_events.event("product.created", {"id": "prod_s", "object": "product", "name": "S"})
    stripe_events.post(client, evt)
    assert services.requeue_unprocessed() == 0  # too recent: its own task is on the way
    with time_machine.travel(time.time() + 120, tick=False):
        assert services.requeue_unprocessed() == 1


def test_checkout_events_for_unknown_orders_are_ignored(client, no_stripe):
    stored = deliver(
        client,
        stripe_events.event(
            "checkout.session.completed",
            {
                "id": "cs_unknown",
                "object": "checkout.session",
                "client_reference_id": "999999",
                "payment_status": "paid",
            },
        ),
    )
    assert stored.status == "ignored"
    assert not Order.objects.exists() and not OrderEvent.objects.exists()
