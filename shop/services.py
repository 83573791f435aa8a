"""Every write of the shop: the catalogue mirror, carts, checkout, orders, refunds and the
Stripe events that drive them.

Rules kept here, learned from where Stripe integrations break:

* Stripe events are stored first (unique Stripe id, INSERT … ON CONFLICT DO NOTHING) and
  processed after, by :func:`process_event` in a Celery task. A redelivered event is stored
  once and processed once.
* Events are nudges, and they arrive out of order: catalogue objects carry the ``created``
  time of the newest event applied (``stripe_version``); an older event is skipped, an event
  of the same second is "in doubt" and the object is fetched from the API instead. Orders only
  move forward through their state machine (:data:`TRANSITIONS`), so a late
  ``checkout.session.expired`` never undoes a payment; the one step back is a refund failing
  after it had succeeded (:data:`REFUND_REVERSALS`).
* Rows money depends on are locked before they change, several in primary-key order, so two
  events for one order at the same moment serialise: one paid transition, no duplicate key.
* Network calls to Stripe run outside any transaction (no row lock held while Stripe answers;
  a checkout start holds only its customer's advisory lock) and carry an idempotency key stored
  beforehand: one per Checkout Session, one per refund attempt.

Audit events: ``order.created``, ``order.paid``, ``order.fulfilled``, ``order.canceled``,
``order.expired``, ``order.refund_requested``, ``order.refunded``, ``order.refund_reversed``,
``shop.sync_requested``, ``shop.webhook_reprocessed``.

Revenue: the ``revenue_cents`` metric gets the order's total (minor units, tagged with the
currency) when it is paid, and the negative amount of each refund when it succeeds, so the
metric's sum over a period is the net revenue of that period.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Collate
from django.urls import reverse
from django.utils import timezone

from adminsite.prepared import Statement
from audit.context import SYSTEM
from audit.services import Event as AuditEvent
from audit.services import record, record_many
from monitoring.metrics import METRICS, track_metric
from shop import stripe_api
from shop.models import (
    MAX_QUANTITY,
    OPEN_REFUND_STATUSES,
    PAID_STATUSES,
    Cart,
    CartItem,
    CatalogueSync,
    EventSource,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    Price,
    Product,
    Refund,
    RefundStatus,
    Source,
    SyncStatus,
    WebhookEvent,
    WebhookStatus,
)
from shop.money import format_money

logger = logging.getLogger(__name__)

SESSION_CART_KEY = "shop_cart"
# Stripe's own default: a signed timestamp older (or newer) than this is refused.
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_WEBHOOK_BYTES = 512 * 1024


class CheckoutError(ValidationError):
    """The cart cannot be paid as it is; ``messages`` tell the customer why."""


class RefundError(ValidationError):
    pass


class WebhookSignatureError(ValueError):
    pass


class WebhookPayloadError(ValueError):
    pass


# --- order state machine ------------------------------------------------------------------------

S = OrderStatus
TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.PAID, S.CANCELED, S.EXPIRED}),
    # Money arriving for an order we closed (its Checkout Session was made although our call
    # timed out) is still money taken: the order is paid, never left canceled.
    S.CANCELED: frozenset({S.PAID}),
    S.EXPIRED: frozenset({S.PAID}),
    S.PAID: frozenset({S.FULFILLED, S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.FULFILLED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.REFUNDED: frozenset(),
}
# The only steps back: a refund that had succeeded fails later (the bank returns the money), so
# less is refunded than before and the status follows the money (see _recompute_refunded).
REFUND_REVERSALS: dict[str, frozenset[str]] = {
    S.REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.PAID, S.FULFILLED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PAID, S.FULFILLED}),
}


def _now():
    return timezone.now()


def _lock_order(order_id: int) -> Order:
    return Order.objects.select_for_update().get(pk=order_id)


class OrderChanges:
    """Changes to locked orders, written together by :meth:`write`: field updates, history
    steps, audit entries, revenue points, and what was paid leaving the customer's cart. One
    order (a console action) or a whole batch of Stripe events use the same path."""

    def __init__(self):
        self._clear()

    def _clear(self) -> None:
        self.dirty: dict[int, tuple[Order, set[str]]] = {}
        self.history: list[OrderEvent] = []
        self.audits: list[tuple[str, Order, dict, dict, Any]] = []
        self.revenue: list[tuple[int, str, str]] = []
        self.paid: list[Order] = []

    def set(self, order: Order, **values) -> None:
        for name, value in values.items():
            if getattr(order, name) != value:
                setattr(order, name, value)
                self.dirty.setdefault(order.pk, (order, set()))[1].add(name)

    def move(
        self,
        order: Order,
        to: str,
        *,
        source: str,
        actor=None,
        stripe_event_id: str = "",
        note: str = "",
        reversal: bool = False,
    ) -> bool:
        """Move the order to ``to`` if its state machine allows it, keeping the step. Returns
        whether it moved. ``reversal``: a step back along REFUND_REVERSALS."""
        steps = (
            REFUND_REVERSALS.get(order.status, frozenset())
            if reversal
            else TRANSITIONS[order.status]
        )
        if to == order.status or to not in steps:
            return False
        previous = order.status
        now = _now()
        self.set(order, status=to)
        if reversal:
            pass  # back to a status the order had: its paid and fulfilled times stay
        elif to == S.PAID:
            self.set(order, paid_at=now)
            self.paid.append(order)
            self.revenue.append((order.amount_total, order.currency, "order"))
        elif to == S.FULFILLED:
            self.set(order, fulfilled_at=now)
        elif to in (S.CANCELED, S.EXPIRED):
            self.set(order, closed_at=now)
        self.history.append(
            OrderEvent(
                order=order,
                from_status=previous,
                to_status=to,
                source=source,
                actor=actor if getattr(actor, "pk", None) else None,
                stripe_event_id=stripe_event_id,
                note=note[:500],
            )
        )
        data = (
            {"source": source, "stripe_event": stripe_event_id}
            if stripe_event_id
            else {"source": source}
        )
        self.audits.append(
            (
                "order.refund_reversed" if reversal else f"order.{to}",
                order,
                {"status": [previous, to]},
                data,
                actor if actor is not None else SYSTEM,
            )
        )
        return True

    def note(
        self, order: Order, *, source: str, note: str, actor=None, stripe_event_id: str = ""
    ) -> None:
        """A step of the history that does not change the status."""
        self.history.append(
            OrderEvent(
                order=order,
                from_status=order.status,
                to_status=order.status,
                source=source,
                actor=actor if getattr(actor, "pk", None) else None,
                stripe_event_id=stripe_event_id,
                note=note[:500],
            )
        )

    def write(self) -> None:
        now = _now()
        if self.dirty:
            orders = [order for order, _ in self.dirty.values()]
            fields = sorted(
                set().union(*(names for _, names in self.dirty.values())) | {"updated_at"}
            )
            for order in orders:
                order.updated_at = now
            update_rows(Order, orders, fields)
        if self.history:
            OrderEvent.objects.bulk_create(self.history)
        record_many(
            [
                AuditEvent(event, target=order, changes=changes, data=data, actor=actor)
                for event, order, changes, data, actor in self.audits
            ]
        )
        for amount, currency, kind in self.revenue:
            _track_revenue(amount, currency, kind)
        if self.paid:
            _clear_bought_items(self.paid)
        self._clear()


def update_rows(model, objs: list, fields: list[str]) -> None:
    """``UPDATE … FROM unnest(…)``: each object's ``fields`` written in one statement, one
    array per column. Django's bulk_update builds a CASE per field and row, and a VALUES list
    needs a placeholder per value; both cost more to build than the update takes to run."""
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    arrays = ", ".join(
        [f"%s::{meta.pk.db_type(connection)}[]"]
        + [f"%s::{f.db_type(connection)}[]" for f in columns]
    )
    names = ", ".join(f.column for f in columns)
    sets = ", ".join(f"{f.column} = v.{f.column}" for f in columns)
    sql = (  # table, column names and types come from the model, values go as parameters
        f"UPDATE {meta.db_table} AS t SET {sets} FROM unnest({arrays}) AS v(id, {names}) "  # noqa: S608
        f"WHERE t.{meta.pk.column} = v.id"
    )
    params = [[obj.pk for obj in objs]]
    params.extend(
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs] for f in columns
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _transition(order: Order, to: str, **kwargs) -> bool:
    """One order's step, written at once (the order is locked by the caller)."""
    changes = OrderChanges()
    moved = changes.move(order, to, **kwargs)
    changes.write()
    return moved


def _note(order: Order, **kwargs) -> None:
    changes = OrderChanges()
    changes.note(order, **kwargs)
    changes.write()


def _track_revenue(amount: int, currency: str, kind: str) -> None:
    transaction.on_commit(
        partial(track_metric, METRICS.REVENUE, amount, tags={"currency": currency, "kind": kind})
    )


# --- catalogue ------------------------------------------------------------------------------------


def _from_unix(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=UTC) if value else None


def _product_fields(data: dict) -> dict:
    return {
        "name": (data.get("name") or data["id"])[:250],
        "description": data.get("description") or "",
        "active": bool(data.get("active", True)),
        "deleted": bool(data.get("deleted", False)),
        "images": list(data.get("images") or []),
        "metadata": dict(data.get("metadata") or {}),
        "stripe_created": _from_unix(data.get("created")),
    }


def _price_fields(data: dict, product: Product) -> dict:
    recurring = data.get("recurring") or {}
    return {
        "product": product,
        "nickname": (data.get("nickname") or "")[:250],
        "active": bool(data.get("active", True)),
        "deleted": bool(data.get("deleted", False)),
        "currency": (data.get("currency") or "").lower(),
        "unit_amount": data.get("unit_amount"),
        "recurring_interval": recurring.get("interval") or "",
        "recurring_interval_count": recurring.get("interval_count") or 1,
        "stripe_created": _from_unix(data.get("created")),
    }


@dataclass
class Applied:
    outcome: str  # created, updated, unchanged, stale
    obj: Any = None


def _lock_or_create(model, stripe_id: str, defaults: Callable[[], dict]):
    """The row for ``stripe_id``, locked, created first if missing. Two events creating the same
    object at once both insert with ON CONFLICT DO NOTHING and then lock the one row."""
    # FOR NO KEY UPDATE: the key never changes, and a price being inserted for this product
    # (its foreign key check) need not wait for the product's update to commit.
    locked = model.objects.select_for_update(no_key=True)
    row = locked.filter(stripe_id=stripe_id).first()
    if row is not None:
        return row, False
    model.objects.bulk_create([model(stripe_id=stripe_id, **defaults())], ignore_conflicts=True)
    # ignore_conflicts leaves the pk unset: read the row back under the lock.
    return locked.get(stripe_id=stripe_id), True


def _apply(row, fields: dict, *, version: int, created: bool, now) -> Applied:
    changed = [name for name, value in fields.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, fields[name])
    row.stripe_version = max(version, row.stripe_version)
    row.synced_at = now
    row.source = Source.STRIPE
    row.save(update_fields=[*changed, "stripe_version", "synced_at", "source", "updated_at"])
    if created:
        return Applied("created", row)
    return Applied("updated" if changed else "unchanged", row)


def apply_product(
    data: dict, *, version: int, refetch: Callable[[], dict] | None = None
) -> Applied:
    """Bring the mirror of a Stripe product up to ``data`` (an event's object or an API read
    made at time ``version``), unless what is stored is newer."""
    with transaction.atomic():
        row, created = _lock_or_create(Product, data["id"], lambda: _product_fields(data))
        if not created and version < row.stripe_version:
            return Applied("stale", row)
        if not created and version == row.stripe_version and refetch is not None:
            data = refetch()  # the same second: which is newer is in doubt, ask Stripe
        return _apply(row, _product_fields(data), version=version, created=created, now=_now())


def _product_for_price(product_id: str, version: int) -> Product:
    product = Product.objects.filter(stripe_id=product_id).first()
    if product is not None:
        return product
    if stripe_api.configured():
        return apply_product(stripe_api.retrieve("product", product_id), version=0).obj
    # Without API keys there is nothing to ask: a minimal row named by its id, which the
    # product's own event or the next sync completes (version 0 loses to either).
    return apply_product({"id": product_id, "name": product_id, "active": True}, version=0).obj


def apply_price(data: dict, *, version: int, refetch: Callable[[], dict] | None = None) -> Applied:
    product_id = data["product"]["id"] if isinstance(data.get("product"), dict) else data["product"]
    with transaction.atomic():
        product = _product_for_price(product_id, version)
        row, created = _lock_or_create(Price, data["id"], lambda: _price_fields(data, product))
        if not created and version < row.stripe_version:
            return Applied("stale", row)
        if not created and version == row.stripe_version and refetch is not None:
            data = refetch()
            product = _product_for_price(
                data["product"]["id"] if isinstance(data["product"], dict) else data["product"],
                version,
            )
        return _apply(
            row, _price_fields(data, product), version=version, created=created, now=_now()
        )


def request_sync(*, actor) -> CatalogueSync:
    """ "Sync now" from the console: a sync run queued for a worker, audited."""
    if not stripe_api.configured():
        raise ValidationError(
            "Stripe is not configured (STRIPE_SECRET_KEY is not set): there is nothing to sync "
            "from. The shop shows the locally seeded demo catalogue."
        )
    from shop import tasks

    with transaction.atomic():
        run = CatalogueSync.objects.create(trigger="console", requested_by=actor)
        record("shop.sync_requested", target=run, actor=actor, data={"sync": run.pk})
        transaction.on_commit(partial(tasks.sync_catalogue.delay, run.pk))
    return run


def sync_catalogue(
    *, trigger: str, run_id: int | None = None, progress: Callable | None = None
) -> CatalogueSync:
    """Reconcile every product and price with Stripe, archived ones included. Idempotent: a
    second run changes nothing. Objects Stripe no longer lists are marked deleted."""
    if not stripe_api.configured():
        raise stripe_api.StripeNotConfiguredError
    run = (
        CatalogueSync.objects.get(pk=run_id)
        if run_id is not None
        else CatalogueSync.objects.create(trigger=trigger)
    )
    wrap = progress or (lambda iterable, **kwargs: iterable)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    seen_products: set[str] = set()
    seen_prices: set[str] = set()
    try:
        # Reads of a list are as of now: an event newer than this instant still wins.
        version = int(time.time())
        for data in wrap(stripe_api.iter_products(), desc="Products"):
            seen_products.add(data["id"])
            outcome = apply_product(data, version=version).outcome
            counts[outcome if outcome in counts else "unchanged"] += 1
        for data in wrap(stripe_api.iter_prices(), desc="Prices"):
            seen_prices.add(data["id"])
            outcome = apply_price(data, version=version).outcome
            counts[outcome if outcome in counts else "unchanged"] += 1
        with transaction.atomic():
            gone = (
                Price.objects.filter(source=Source.STRIPE, deleted=False)
                .exclude(stripe_id__in=seen_prices)
                .update(deleted=True, active=False, synced_at=_now())
            )
            gone += (
                Product.objects.filter(source=Source.STRIPE, deleted=False)
                .exclude(stripe_id__in=seen_products)
                .update(deleted=True, active=False, synced_at=_now())
            )
        counts["updated"] += gone
    except Exception as error:
        CatalogueSync.objects.filter(pk=run.pk).update(
            status=SyncStatus.FAILED,
            error=str(error)[:2000],
            finished_at=_now(),
            products_seen=len(seen_products),
            prices_seen=len(seen_prices),
            **counts,
        )
        raise
    CatalogueSync.objects.filter(pk=run.pk).update(
        status=SyncStatus.SUCCEEDED,
        finished_at=_now(),
        products_seen=len(seen_products),
        prices_seen=len(seen_prices),
        **counts,
    )
    run.refresh_from_db()
    return run


# --- carts ------------------------------------------------------------------------------------


def _sellable_price(price_id) -> Price:
    price = Price.objects.select_related("product").filter(pk=price_id).first()
    if price is None:
        raise ValidationError({"price": "That product is not in the catalogue."})
    if not (price.sellable and price.product.sellable):
        raise ValidationError(
            {"price": f"{price.product.name} is no longer sold, so it cannot be added."}
        )
    return price


def _check_quantity(quantity: int) -> int:
    if not 1 <= quantity <= MAX_QUANTITY:
        raise ValidationError(
            {"quantity": f"Choose a quantity from 1 to {MAX_QUANTITY} (got {quantity})."}
        )
    return quantity


def session_cart(session) -> dict[str, int]:
    """The anonymous cart, ``{price id: quantity}``; anything malformed in it is dropped."""
    raw = session.get(SESSION_CART_KEY)
    if not isinstance(raw, dict):
        return {}
    return {
        str(key): value
        for key, value in raw.items()
        if str(key).isdigit() and isinstance(value, int) and 1 <= value <= MAX_QUANTITY
    }


def add_to_cart(*, user, session, price_id: int, quantity: int = 1) -> Price:
    """One more of a price in the visitor's cart (the database for a signed-in customer, the
    session for anyone else)."""
    price = _sellable_price(price_id)
    _check_quantity(quantity)
    if not user.is_authenticated:
        quantities = session_cart(session)
        quantities[str(price.pk)] = min(MAX_QUANTITY, quantities.get(str(price.pk), 0) + quantity)
        session[SESSION_CART_KEY] = quantities
        return price
    with transaction.atomic():
        cart, _ = Cart.objects.get_or_create(user=user)
        Cart.objects.select_for_update().filter(pk=cart.pk).first()
        item = CartItem.objects.filter(cart=cart, price=price).first()
        if item is None:
            CartItem.objects.create(cart=cart, price=price, quantity=quantity)
        else:
            item.quantity = min(MAX_QUANTITY, item.quantity + quantity)
            item.save(update_fields=["quantity"])
        cart.save(update_fields=["updated_at"])
    return price


def set_quantity(*, user, session, price_id: int, quantity: int) -> None:
    """Change a line's quantity; 0 removes it."""
    if quantity != 0:
        _check_quantity(quantity)
    if not user.is_authenticated:
        cart = session_cart(session)
        if str(price_id) not in cart:
            raise ValidationError({"price": "That item is not in your cart any more."})
        if quantity:
            cart[str(price_id)] = quantity
        else:
            cart.pop(str(price_id))
        session[SESSION_CART_KEY] = cart
        return
    with transaction.atomic():
        item = (
            CartItem.objects.select_for_update().filter(cart__user=user, price_id=price_id).first()
        )
        if item is None:
            raise ValidationError({"price": "That item is not in your cart any more."})
        if quantity:
            item.quantity = quantity
            item.save(update_fields=["quantity"])
        else:
            item.delete()


def merge_session_cart(*, user, session) -> int:
    """At sign-in, the anonymous cart joins the customer's: quantities add up (to the limit).
    Returns how many lines were merged."""
    cart_data = session_cart(session)
    if not cart_data or user.is_staff:
        session.pop(SESSION_CART_KEY, None)
        return 0
    ids = [int(k) for k in cart_data if k.isdigit()]
    prices = {p.pk: p for p in Price.objects.filter(pk__in=ids)}
    merged = 0
    with transaction.atomic():
        cart, _ = Cart.objects.get_or_create(user=user)
        Cart.objects.select_for_update().filter(pk=cart.pk).first()
        existing = {item.price_id: item for item in CartItem.objects.filter(cart=cart)}
        for key, quantity in cart_data.items():
            price = prices.get(int(key)) if key.isdigit() else None
            if price is None or quantity < 1:
                continue
            item = existing.get(price.pk)
            if item is None:
                CartItem.objects.create(
                    cart=cart, price=price, quantity=min(MAX_QUANTITY, quantity)
                )
            else:
                item.quantity = min(MAX_QUANTITY, item.quantity + quantity)
                item.save(update_fields=["quantity"])
            merged += 1
    session.pop(SESSION_CART_KEY, None)
    return merged


# --- checkout ------------------------------------------------------------------------------------


def check_cart(items: list[CartItem]) -> list[str]:
    """What stops this cart from being paid, in the customer's words."""
    if not items:
        return ["Your cart is empty."]
    problems = []
    for item in items:
        price = item.price
        if not (price.sellable and price.product.sellable):
            problems.append(
                f"{price.product.name} ({format_money(price.unit_amount, price.currency)}) is no "
                "longer sold: remove it from your cart to continue."
            )
    currencies = {item.price.currency for item in items}
    if len(currencies) > 1:
        problems.append(
            "Your cart mixes currencies ("
            + ", ".join(sorted(c.upper() for c in currencies))
            + "): one checkout takes one currency, so pay for them separately."
        )
    return problems


def _unit_amount(price: Price) -> int:
    """The amount of a price :func:`check_cart` let through: a sellable price has one."""
    if price.unit_amount is None:
        raise CheckoutError(
            [f"{price.product.name} is no longer sold: remove it from your cart to continue."]
        )
    return price.unit_amount


# A second "Pay" for the same cart while its checkout is open (a double click, a reload, a second
# tab) goes to the same Stripe Checkout Session rather than placing a second order. Stripe keeps
# a session open for 24 hours; past REUSE_CHECKOUT_FOR a new order and session start.
REUSE_CHECKOUT_FOR = timedelta(hours=1)
# With the customer's id: one checkout start at a time per customer, from the cart to the
# session's URL on the order (Stripe's round trip included, so no row lock is held over it).
CHECKOUT_LOCK = 0x73686F70  # "shop"


@contextlib.contextmanager
def _checkout_lock(customer_id: int):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [CHECKOUT_LOCK, customer_id])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [CHECKOUT_LOCK, customer_id])


def _open_checkout(customer, items: list[CartItem]) -> Order | None:
    """The customer's pending order, started within REUSE_CHECKOUT_FOR, whose Checkout Session
    is open and whose lines are the cart's (price, quantity and unit amount)."""
    wanted = sorted((item.price_id, item.quantity, _unit_amount(item.price)) for item in items)
    recent = (
        Order.objects.filter(
            customer=customer, status=S.PENDING, created_at__gte=_now() - REUSE_CHECKOUT_FOR
        )
        .exclude(checkout_url="")
        .prefetch_related("lines")
        .order_by("-created_at")[:5]
    )
    for order in recent:
        lines = sorted(
            (line.price_id, line.quantity, line.unit_amount) for line in order.lines.all()
        )
        if lines == wanted:
            return order
    return None


def start_checkout(*, customer, base_url: str) -> Order:
    """A pending order with a snapshot of the cart, then a Stripe Checkout Session for it;
    Stripe sends the customer back to ``base_url`` + the order's page (or the cart). When an
    order for the same cart is still open at Stripe (REUSE_CHECKOUT_FOR), that order is
    returned instead, and nothing is written.

    Raises CheckoutError (the cart cannot be paid: archived prices, empty, mixed currencies;
    nothing written), StripeNotConfiguredError, or StripeUnavailableError/StripeRejectedError
    (the order is closed as canceled with the reason, and the cart is left as it was)."""
    if not stripe_api.configured():
        raise stripe_api.StripeNotConfiguredError
    with _checkout_lock(customer.pk):
        return _start_checkout(customer=customer, base_url=base_url)


def _start_checkout(*, customer, base_url: str) -> Order:
    with transaction.atomic():
        cart = Cart.objects.select_for_update().filter(user=customer).first()
        items = list(cart.items.select_related("price__product").order_by("pk")) if cart else []
        problems = check_cart(items)
        if problems:
            raise CheckoutError(problems)
        reusable = _open_checkout(customer, items)
        if reusable is not None:
            return reusable
        currency = items[0].price.currency
        order = Order.objects.create(
            customer=customer,
            currency=currency,
            amount_total=sum(_unit_amount(item.price) * item.quantity for item in items),
            checkout_idempotency_key=f"checkout-{uuid.uuid4()}",
        )
        OrderLine.objects.bulk_create(
            OrderLine(
                order=order,
                price=item.price,
                stripe_price_id=item.price.stripe_id,
                product_name=item.price.product.name,
                unit_amount=_unit_amount(item.price),
                currency=item.price.currency,
                quantity=item.quantity,
                recurring_interval=item.price.recurring_interval,
            )
            for item in items
        )
        OrderEvent.objects.create(
            order=order,
            to_status=S.PENDING,
            source=EventSource.CHECKOUT,
            actor=customer,
            note="Order placed; the customer is sent to Stripe Checkout to pay.",
        )
        record(
            "order.created",
            target=order,
            actor=customer,
            data={"amount": order.amount_total, "currency": currency, "lines": len(items)},
        )
    recurring = any(item.price.recurring_interval for item in items)
    params = {
        "mode": "subscription" if recurring else "payment",
        "client_reference_id": str(order.pk),
        "line_items": [
            {"price": item.price.stripe_id, "quantity": item.quantity} for item in items
        ],
        "success_url": f"{base_url}{reverse('store:order', args=[order.pk])}?checkout=success",
        "cancel_url": f"{base_url}{reverse('store:cart')}?checkout=canceled",
        "metadata": {"order_id": str(order.pk)},
    }
    if customer.email:
        params["customer_email"] = customer.email
    try:
        session = stripe_api.create_checkout_session(
            params, idempotency_key=order.checkout_idempotency_key
        )
    except (stripe_api.StripeUnavailableError, stripe_api.StripeRejectedError) as error:
        with transaction.atomic():
            locked = _lock_order(order.pk)
            _transition(
                locked,
                S.CANCELED,
                source=EventSource.CHECKOUT,
                actor=customer,
                note=f"Stripe Checkout could not be started: {error}",
            )
        raise
    with transaction.atomic():
        locked = _lock_order(order.pk)
        locked.stripe_checkout_session_id = session["id"]
        locked.checkout_url = session.get("url") or ""
        locked.save(update_fields=["stripe_checkout_session_id", "checkout_url", "updated_at"])
        _note(
            locked,
            source=EventSource.CHECKOUT,
            actor=customer,
            note=f"Stripe Checkout Session {session['id']} created.",
        )
    return locked


# --- console actions ----------------------------------------------------------------------------


def fulfil_order(*, actor, order: Order) -> Order:
    with transaction.atomic():
        locked = _lock_order(order.pk)
        if not _transition(
            locked, S.FULFILLED, source=EventSource.CONSOLE, actor=actor, note="Marked fulfilled."
        ):
            raise ValidationError(
                f"Order #{locked.pk} is {locked.get_status_display().lower()}: only paid orders "
                "can be marked fulfilled."
            )
    return locked


def refund_order(*, actor, order: Order, amount: int, reason: str = "") -> Refund:
    """Refund ``amount`` (minor units) of a paid order through Stripe's Refund API.

    The attempt is stored first with its own idempotency key (so a retry after a timeout
    cannot refund twice), then sent. More than what is left (after refunds already made or
    still pending) is refused before anything is written."""
    reason = " ".join((reason or "").split())[:500]
    if amount <= 0:
        raise RefundError({"amount": "The refund must be more than zero."})
    if not stripe_api.configured():
        raise RefundError(
            "Stripe is not configured (STRIPE_SECRET_KEY is not set), so nothing can be refunded."
        )
    with transaction.atomic():
        locked = _lock_order(order.pk)
        if locked.status not in PAID_STATUSES or locked.status == S.REFUNDED:
            raise RefundError(
                f"Order #{locked.pk} is {locked.get_status_display().lower()}: only paid orders "
                "with money left to refund can be refunded."
            )
        if not locked.stripe_payment_intent_id:
            raise RefundError(
                f"Order #{locked.pk} has no Stripe payment to refund (no PaymentIntent id)."
            )
        open_amount = (
            locked.refunds.filter(status__in=OPEN_REFUND_STATUSES).aggregate(s=Sum("amount"))["s"]
            or 0
        )
        left = locked.amount_total - locked.amount_refunded - open_amount
        if amount > left:
            raise RefundError(
                {
                    "amount": f"{format_money(amount, locked.currency)} is more than the "
                    f"{format_money(left, locked.currency)} left to refund on order #{locked.pk}."
                }
            )
        idempotency_key = f"refund-{locked.pk}-{uuid.uuid4()}"
        refund = Refund.objects.create(
            order=locked,
            amount=amount,
            currency=locked.currency,
            reason=reason,
            requested_by=actor,
            idempotency_key=idempotency_key,
        )
        _note(
            locked,
            source=EventSource.CONSOLE,
            actor=actor,
            note=f"Refund of {format_money(amount, locked.currency)} requested"
            + (f": {reason}" if reason else "."),
        )
        record(
            "order.refund_requested",
            target=locked,
            actor=actor,
            data={
                "refund": refund.pk,
                "amount": amount,
                "currency": locked.currency,
                "reason": reason,
            },
        )
    try:
        data = stripe_api.create_refund(
            {
                "payment_intent": locked.stripe_payment_intent_id,
                "amount": amount,
                "metadata": {"order_id": str(locked.pk), "refund_id": str(refund.pk)},
            },
            idempotency_key=idempotency_key,
        )
    except stripe_api.StripeRejectedError as error:
        Refund.objects.filter(pk=refund.pk).update(
            status=RefundStatus.FAILED, failure_message=str(error)[:1000], updated_at=_now()
        )
        raise RefundError(f"Stripe refused the refund: {error}") from error
    # StripeUnavailableError: the attempt stays "requested"; charge.refunded / refund.updated
    # (found by the refund_id in its metadata) complete it if Stripe did make it.
    applied = apply_refund(data, version=int(time.time()))
    if applied is None:
        raise RefundError(
            f"Stripe's answer for refund {refund.pk} names neither order #{locked.pk} nor its "
            "payment, so it was not recorded."
        )
    return applied


_REFUND_RANK: dict[str, int] = {
    RefundStatus.REQUESTED: 0,
    RefundStatus.PENDING: 1,
    RefundStatus.REQUIRES_ACTION: 1,
    RefundStatus.SUCCEEDED: 2,
    RefundStatus.CANCELED: 2,
    # A succeeded refund can still fail later (the bank returns it); never the other way.
    RefundStatus.FAILED: 3,
}


def _order_for_payment(payment_intent: str, metadata: dict) -> Order | None:
    order_id = (metadata or {}).get("order_id")
    if order_id and str(order_id).isdigit():
        order = Order.objects.filter(pk=int(order_id)).first()
        if order is not None:
            return order
    if payment_intent:
        return Order.objects.filter(stripe_payment_intent_id=payment_intent).first()
    return None


def apply_refund(data: dict, *, version: int, stripe_event_id: str = "") -> Refund | None:
    """A Stripe refund object (from our call, ``refund.*`` or ``charge.refunded``): store it,
    move its status only forward, and bring the order's refunded amount and status up to date."""
    metadata = data.get("metadata") or {}
    order = _order_for_payment(data.get("payment_intent") or "", metadata)
    if order is None:
        return None
    with transaction.atomic():
        locked = _lock_order(order.pk)
        refund = Refund.objects.select_for_update().filter(stripe_refund_id=data["id"]).first()
        ours = metadata.get("refund_id")
        if refund is None and ours and str(ours).isdigit():
            refund = (
                Refund.objects.select_for_update()
                .filter(pk=int(ours), order=locked, stripe_refund_id__isnull=True)
                .first()
            )
        status = data.get("status") or RefundStatus.PENDING
        if status not in _REFUND_RANK:
            status = RefundStatus.PENDING
        if refund is None:
            refund = Refund.objects.create(
                order=locked,
                stripe_refund_id=data["id"],
                amount=int(data["amount"]),
                currency=(data.get("currency") or locked.currency).lower(),
                status=status,
                reason=(data.get("reason") or "Made in Stripe")[:500],
                failure_message=(data.get("failure_reason") or "")[:1000],
            )
        elif _REFUND_RANK[status] >= _REFUND_RANK[refund.status]:
            refund.stripe_refund_id = data["id"]
            refund.status = status
            refund.failure_message = (data.get("failure_reason") or "")[:1000]
            refund.save(
                update_fields=["stripe_refund_id", "status", "failure_message", "updated_at"]
            )
        _recompute_refunded(locked, stripe_event_id=stripe_event_id)
    return refund


def _recompute_refunded(order: Order, *, stripe_event_id: str = "") -> None:
    """The order's refunded amount is the sum of its succeeded refunds (capped at the total);
    its status follows. Revenue gets the difference."""
    succeeded = (
        order.refunds.filter(status=RefundStatus.SUCCEEDED).aggregate(s=Sum("amount"))["s"] or 0
    )
    refunded = min(succeeded, order.amount_total)
    if refunded == order.amount_refunded:
        return
    delta = refunded - order.amount_refunded
    changes = OrderChanges()
    changes.set(order, amount_refunded=refunded)
    source = EventSource.WEBHOOK if stripe_event_id else EventSource.CONSOLE
    moved = False
    if order.status in PAID_STATUSES:
        if refunded >= order.amount_total:
            target = S.REFUNDED
        elif refunded > 0:
            target = S.PARTIALLY_REFUNDED
        else:  # every refund failed after all: back to where the order was before them
            target = S.FULFILLED if order.fulfilled_at else S.PAID
        amounts = (
            f"{format_money(refunded, order.currency)} of "
            f"{format_money(order.amount_total, order.currency)} refunded."
        )
        moved = changes.move(
            order,
            target,
            source=source,
            stripe_event_id=stripe_event_id,
            note=f"A refund failed after it had succeeded: {amounts}" if delta < 0 else amounts,
            reversal=delta < 0,
        )
    if not moved:
        changes.note(
            order,
            source=source,
            stripe_event_id=stripe_event_id,
            note=f"Refunded amount now {format_money(refunded, order.currency)}.",
        )
    changes.revenue.append((-delta, order.currency, "refund"))
    changes.write()


# --- webhooks ----------------------------------------------------------------------------------


def webhook_secrets() -> list[str]:
    """The endpoint secrets in use: several (comma-separated) while one is being rotated."""
    return [s.strip() for s in settings.STRIPE_WEBHOOK_SECRET.split(",") if s.strip()]


def sign_payload(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``v1`` signature Stripe puts on ``payload`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def verify_signature(payload: bytes, header: str, *, now: float | None = None) -> None:
    """Stripe's scheme: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]``, HMAC-SHA256 of
    ``"<t>.<raw body>"`` with the endpoint secret. Any ``v1`` matching any of our secrets
    passes (Stripe signs with every active secret while one rolls); the timestamp must be
    within the tolerance, so a captured request cannot be replayed later."""
    secrets = webhook_secrets()
    if not secrets:
        raise WebhookSignatureError("STRIPE_WEBHOOK_SECRET is not set: events cannot be verified.")
    if not header:
        raise WebhookSignatureError("The Stripe-Signature header is missing.")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureError(
            "The Stripe-Signature header has no timestamp or no v1 signature."
        )
    current = time.time() if now is None else now
    if abs(current - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        raise WebhookSignatureError(
            f"The signature's timestamp is {int(current - timestamp)} s away from now "
            f"(tolerance {SIGNATURE_TOLERANCE_SECONDS} s)."
        )
    expected = [sign_payload(payload, secret, timestamp) for secret in secrets]
    if not any(hmac.compare_digest(e, s) for e in expected for s in signatures):
        raise WebhookSignatureError("No v1 signature matches the endpoint secret.")


# Prepared once per connection: every delivery runs it, and parsing and planning it again each
# time cost PostgreSQL about as much as the insert itself.
_INSERT_EVENT = Statement(
    "shop_insert_webhook_event",
    "INSERT INTO shop_webhookevent (stripe_id, type, livemode, api_version, stripe_created,"
    " object_id, payload, status, attempts, last_error, result, received_at)"
    " VALUES (%(stripe_id)s, %(type)s, %(livemode)s, %(api_version)s, %(created)s,"
    " %(object_id)s, %(payload)s, 'received', 0, '', '', %(received_at)s)"
    " ON CONFLICT (stripe_id) DO NOTHING RETURNING id",
    [
        ("stripe_id", "varchar"),
        ("type", "varchar"),
        ("livemode", "boolean"),
        ("api_version", "varchar"),
        ("created", "bigint"),
        ("object_id", "varchar"),
        ("payload", "jsonb"),
        ("received_at", "timestamptz"),
    ],
)


def store_event(*, payload: bytes, signature: str) -> tuple[int | None, str]:
    """Verify and store one delivery. Returns (event row id or None for a duplicate, event id).
    The processing task is queued after the commit."""
    verify_signature(payload, signature)
    try:
        event = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise WebhookPayloadError(f"The body is not JSON: {error}") from None
    if not isinstance(event, dict) or event.get("object") != "event":
        raise WebhookPayloadError("The body is not a Stripe event (object must be 'event').")
    stripe_id, kind, created = event.get("id"), event.get("type"), event.get("created")
    obj = (event.get("data") or {}).get("object")
    if not (isinstance(stripe_id, str) and stripe_id and isinstance(kind, str) and kind):
        raise WebhookPayloadError("The event has no id or no type.")
    if not isinstance(created, int) or not isinstance(obj, dict):
        raise WebhookPayloadError("The event has no created time or no data.object.")
    # One statement in autocommit: stored (or found stored) once it returns, in a single
    # round trip. The unique Stripe id makes a redelivery, even a simultaneous one, a no-op.
    row = _INSERT_EVENT.execute(
        {
            "stripe_id": stripe_id[:255],
            "type": kind[:100],
            "livemode": bool(event.get("livemode")),
            "api_version": str(event.get("api_version") or "")[:50],
            "created": created,
            "object_id": str(obj.get("id") or "")[:255],
            "payload": payload.decode(),
            "received_at": _now(),
        }
    ).fetchone()
    if row is None:
        return None, stripe_id
    _wake_processor()
    return row[0], stripe_id


# Set while a drain task is queued or running: deliveries in between need not queue another
# (one SET NX instead of a task per event). A drain deletes it only once it has caught up (a
# batch came back empty) and then reads once more before it ends, so an event committed before
# a delivery finds the key set is always seen by a drain. While events keep arriving, one drain
# therefore takes them all, in batches that grow with the load; a second drain would split
# them into half-size batches, and each batch costs a dozen statements whatever its size. A
# running drain renews the expiry at every batch; it only matters if the task is lost (the
# requeue task covers that case too).
DRAIN_KEY = "shop:webhook-drain-queued"
DRAIN_KEY_SECONDS = 60
_redis_client = None


def _redis():
    """One Redis client per process for the drain flag (the cache framework builds a client
    object per call, which costs more than the SET itself on this hot path)."""
    global _redis_client
    if _redis_client is None:
        import redis

        _redis_client = redis.Redis.from_url(settings.REDIS_URL)
    return _redis_client


def drain_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}{DRAIN_KEY}"


def _wake_processor() -> None:
    from shop import tasks

    try:
        first = bool(_redis().set(drain_key(), 1, nx=True, ex=DRAIN_KEY_SECONDS))
    except Exception:  # Redis down: queue the task anyway (it fails too, and requeue covers it)
        logger.warning("webhook drain flag unavailable", exc_info=True)
        first = True
    if first:
        tasks.process_webhook_events.delay()


def drain_running() -> None:
    """A drain is still at work: deliveries keep finding the flag set (if it is)."""
    try:
        _redis().expire(drain_key(), DRAIN_KEY_SECONDS)
    except Exception:  # the flag spares tasks; the drain goes on without it
        logger.warning("webhook drain flag unavailable", exc_info=True)


def drain_caught_up() -> None:
    """A drain found nothing left: the next delivery queues a new one. The drain reads once
    more after this, for events stored before it."""
    _redis().delete(drain_key())


BATCH_SIZE = 200


def process_received(*, limit: int = BATCH_SIZE) -> list[tuple[int, str]]:
    """Process up to ``limit`` stored events in one transaction, as a worker drains the queue.

    Events are taken with ``FOR UPDATE SKIP LOCKED`` (several workers drain side by side) and
    handled together: the orders they touch are locked once, in primary-key order, and written
    in bulk; catalogue objects take their newest event of the batch, their rows locked once
    and written in bulk too, after the orders. If anything in the batch
    fails, its events are handled one by one instead, so one bad event fails alone. Returns
    (event id, status) for each event taken."""
    with transaction.atomic():
        events = list(
            WebhookEvent.objects.select_for_update(skip_locked=True)
            .filter(status=WebhookStatus.RECEIVED)
            .order_by("pk")[:limit]
        )
        if not events:
            return []
        try:
            with transaction.atomic():
                outcomes: dict[int, Outcome | Exception] = dict(_process_together(events))
        except Exception:
            logger.warning("webhook batch failed; handling its events one by one", exc_info=True)
            outcomes = {}
            for event in events:
                try:
                    with transaction.atomic():
                        outcomes[event.pk] = _handle(event)
                except Exception as error:  # noqa: BLE001 - recorded on the event, retried
                    outcomes[event.pk] = error
        now = _now()
        retry = []
        for event in events:
            outcome = outcomes[event.pk]
            event.attempts += 1
            event.processed_at = now
            if isinstance(outcome, Exception):
                event.status = WebhookStatus.FAILED
                event.last_error = f"{type(outcome).__name__}: {outcome}"[:5000]
                retry.append(event.pk)
            else:
                event.status, event.result, event.last_error = (
                    outcome.status,
                    outcome.result[:500],
                    "",
                )
        update_rows(
            WebhookEvent, events, ["status", "result", "last_error", "attempts", "processed_at"]
        )
        if retry:
            from shop import tasks

            for pk in retry:
                transaction.on_commit(
                    partial(tasks.process_webhook_event.apply_async, (pk,), countdown=10)
                )
    return [(event.pk, event.status) for event in events]


def _handle(event: WebhookEvent) -> Outcome:
    handler = HANDLERS.get(event.type)
    if handler is None:
        return Outcome(WebhookStatus.IGNORED, f"No action for {event.type} events.")
    return handler(event, event.payload["data"]["object"]) or Outcome()


_CATALOGUE_TYPES = {"product.created", "product.updated", "price.created", "price.updated"}


def _process_together(events: list[WebhookEvent]) -> Iterable[tuple[int, Outcome]]:
    checkout: list[WebhookEvent] = []
    catalogue: dict[tuple[str, str | None], list[WebhookEvent]] = {}
    others: list[WebhookEvent] = []
    for event in events:
        obj = event.payload["data"]["object"]
        if event.type.startswith("checkout.session.") and event.type in HANDLERS:
            checkout.append(event)
        elif event.type in _CATALOGUE_TYPES:
            # Of several events for one object in the batch only the newest can matter.
            key = (event.type.split(".")[0], obj.get("id"))
            catalogue.setdefault(key, []).append(event)
        else:
            others.append(event)
    # Orders first, then products before prices, each by Stripe id: every batch takes its locks
    # in the same order, so batches drained side by side never deadlock. The catalogue rows,
    # which most batches share, come last: they stay locked only for the end of the batch,
    # after the orders' writes and audit entries.
    yield from _checkout_together(checkout)
    newest_products: list[WebhookEvent] = []
    newest_prices: list[WebhookEvent] = []
    for key in sorted(catalogue, key=lambda k: (k[0] != "product", k[1] or "")):
        group = catalogue[key]
        group.sort(key=lambda e: (e.stripe_created, e.pk))
        newest = group[-1]
        for older in group[:-1]:
            yield (
                older.pk,
                Outcome(result=f"Superseded by the newer {newest.stripe_id} in the same batch."),
            )
        (newest_products if key[0] == "product" else newest_prices).append(newest)
    yield from _catalogue_together(Product, newest_products, "Product")
    yield from _catalogue_together(Price, newest_prices, "Price")
    for event in others:
        yield event.pk, _handle(event)


def _price_product_id(data: dict) -> str | None:
    product = data.get("product")
    return product["id"] if isinstance(product, dict) else product


def _batch_fields(row, data: dict) -> dict | None:
    """The fields of a locked catalogue row from an event's object; None for a price whose
    event names another product than the row's (Stripe never moves a price: left to the
    single path, which finds or creates that product)."""
    if isinstance(row, Product):
        return _product_fields(data)
    if row.product.stripe_id != _price_product_id(data):
        return None
    return _price_fields(data, row.product)


def _catalogue_together(model, events: list[WebhookEvent], label: str) -> list[tuple[int, Outcome]]:
    """The newest event of each object of one model in a batch, sorted by Stripe id: the rows
    are locked in one statement (in that order) and written in one, with the same rules as
    :func:`apply_product` / :func:`apply_price`: an older event than the stored state is
    stale. An event that needs more than its stored row (no row yet, an event of the same
    second to check with the API) is handled alone by :func:`_handle`, as outside a batch."""
    if not events:
        return []
    objects = {event.pk: event.payload["data"]["object"] for event in events}
    rows = {
        row.stripe_id: row
        # A price's product comes along (unlocked, as the single path reads it).
        for row in model.objects.select_for_update(no_key=True, of=("self",))
        .select_related(*(["product"] if model is Price else []))
        .filter(stripe_id__in=[obj["id"] for obj in objects.values()])
        # Byte order, as the batch sorted them: batches lock these rows in the same order.
        .order_by(Collate("stripe_id", "C"))
    }
    ask_stripe = stripe_api.configured()
    now = _now()
    results: list[tuple[int, Outcome]] = []
    written: list = []
    names: set[str] = set()
    for event in events:
        obj, version = objects[event.pk], event.stripe_created
        row = rows.get(obj["id"])
        if row is not None and version < row.stripe_version:
            results.append((event.pk, Outcome(result=f"{label} {obj['id']}: stale.")))
            continue
        in_doubt = row is None or (ask_stripe and version == row.stripe_version)
        fields = None if in_doubt else _batch_fields(row, obj)
        if row is None or fields is None:
            results.append((event.pk, _handle(event)))
            continue
        changed = [name for name, value in fields.items() if _differs(row, name, value)]
        for name in changed:
            setattr(row, name, fields[name])
        names.update(fields)
        row.stripe_version = max(version, row.stripe_version)
        row.synced_at = row.updated_at = now
        row.source = Source.STRIPE
        written.append(row)
        outcome = "updated" if changed else "unchanged"
        results.append((event.pk, Outcome(result=f"{label} {obj['id']}: {outcome}.")))
    update_rows(
        model, written, sorted(names | {"stripe_version", "synced_at", "source", "updated_at"})
    )
    return results


def _differs(row, name: str, value) -> bool:
    field = row._meta.get_field(name)
    if field.is_relation:  # the same row, perhaps another instance
        return getattr(row, field.attname) != value.pk
    return getattr(row, name) != value


def _checkout_together(events: list[WebhookEvent]) -> Iterable[tuple[int, Outcome]]:
    if not events:
        return
    wanted = {}
    for event in events:
        obj = event.payload["data"]["object"]
        wanted[event.pk] = _order_id_for_session(obj)
    by_session = [e.payload["data"]["object"].get("id") for e in events if wanted[e.pk] is None]
    orders = {
        order.pk: order
        for order in Order.objects.select_for_update()
        .filter(
            Q(pk__in=[v for v in wanted.values() if v])
            | Q(stripe_checkout_session_id__in=by_session)
        )
        .order_by("pk")
    }
    session_orders = {
        o.stripe_checkout_session_id: o for o in orders.values() if o.stripe_checkout_session_id
    }
    changes = OrderChanges()
    results = []
    # Within the batch, each order sees its events in the order Stripe made them.
    for event in sorted(events, key=lambda e: (e.stripe_created, e.pk)):
        obj = event.payload["data"]["object"]
        order_id = wanted[event.pk]
        order = orders.get(order_id) if order_id else session_orders.get(obj.get("id"))
        if order is None:
            results.append(
                (
                    event.pk,
                    Outcome(
                        WebhookStatus.IGNORED, f"No order for Checkout Session {obj.get('id')}."
                    ),
                )
            )
            continue
        results.append((event.pk, _checkout_effects(changes, order, event, obj)))
    changes.write()
    yield from results


@dataclass
class Outcome:
    status: str = WebhookStatus.PROCESSED
    result: str = ""


def process_event(event_id: int) -> str:
    """Act on one stored event, once (a reprocess from the console, or the retry of a failed
    one). Returns its final status. A failure is recorded on the event (attempts, error) and
    raised again so the task retries."""
    try:
        with transaction.atomic():
            event = (
                WebhookEvent.objects.select_for_update()
                .filter(pk=event_id, status__in=[WebhookStatus.RECEIVED, WebhookStatus.FAILED])
                .first()
            )
            if event is None:
                return "done"  # processed already (a duplicate delivery of the task)
            outcome = _handle(event)
            event.status = outcome.status
            event.result = outcome.result[:500]
            event.attempts += 1
            event.processed_at = _now()
            event.last_error = ""
            event.save(update_fields=["status", "result", "attempts", "processed_at", "last_error"])
            return event.status
    except Exception as error:
        WebhookEvent.objects.filter(pk=event_id).update(
            status=WebhookStatus.FAILED,
            attempts=F("attempts") + 1,
            processed_at=_now(),
            last_error=f"{type(error).__name__}: {error}"[:5000],
        )
        raise


def reprocess_event(*, actor, event: WebhookEvent) -> None:
    """ "Reprocess" from the console: a failed (or any) event is processed again."""
    from shop import tasks

    with transaction.atomic():
        locked = WebhookEvent.objects.select_for_update().get(pk=event.pk)
        previous = locked.status
        locked.status = WebhookStatus.RECEIVED
        locked.save(update_fields=["status"])
        record(
            "shop.webhook_reprocessed",
            target=locked,
            actor=actor,
            changes={"status": [previous, WebhookStatus.RECEIVED]},
            data={"stripe_event": locked.stripe_id, "type": locked.type},
        )
        transaction.on_commit(partial(tasks.process_webhook_event.delay, locked.pk))


def requeue_unprocessed(*, older_than_seconds: int = 60) -> int:
    """Events stored but not processed after a minute (the broker was down, or the queued
    drain was lost): queue a drain. Returns how many were waiting."""
    from shop import tasks

    cutoff = _now() - timedelta(seconds=older_than_seconds)
    waiting = WebhookEvent.objects.filter(
        status=WebhookStatus.RECEIVED, received_at__lt=cutoff
    ).count()
    if waiting:
        tasks.process_webhook_events.delay()
    return waiting


# --- event handlers --------------------------------------------------------------------------


def _refetcher(kind: str, stripe_id: str) -> Callable[[], dict] | None:
    return partial(stripe_api.retrieve, kind, stripe_id) if stripe_api.configured() else None


def _on_product(event: WebhookEvent, obj: dict) -> Outcome:
    if event.type == "product.deleted":
        obj = {**obj, "deleted": True, "active": False}
    applied = apply_product(
        obj,
        version=event.stripe_created,
        refetch=None if event.type == "product.deleted" else _refetcher("product", obj["id"]),
    )
    return Outcome(result=f"Product {obj['id']}: {applied.outcome}.")


def _on_price(event: WebhookEvent, obj: dict) -> Outcome:
    if event.type == "price.deleted":
        obj = {**obj, "deleted": True, "active": False}
    applied = apply_price(
        obj,
        version=event.stripe_created,
        refetch=None if event.type == "price.deleted" else _refetcher("price", obj["id"]),
    )
    return Outcome(result=f"Price {obj['id']}: {applied.outcome}.")


def _order_for_session(obj: dict) -> Order | None:
    order_id = _order_id_for_session(obj)
    if order_id is not None:
        order = Order.objects.filter(pk=order_id).first()
        if order is not None:
            return order
    return Order.objects.filter(stripe_checkout_session_id=obj.get("id")).first()


def _checkout_effects(
    changes: OrderChanges, order: Order, event: WebhookEvent, obj: dict
) -> Outcome:
    """What one ``checkout.session.*`` event does to its (locked) order, into ``changes``."""
    ids = {}
    for name, value in (
        ("stripe_checkout_session_id", obj.get("id")),
        ("stripe_payment_intent_id", obj.get("payment_intent")),
        ("stripe_subscription_id", obj.get("subscription")),
        ("stripe_customer_id", obj.get("customer")),
        ("payment_status", obj.get("payment_status")),
    ):
        if isinstance(value, dict):
            value = value.get("id")
        if value:
            ids[name] = value
    changes.set(order, **ids)
    kind = event.type.removeprefix("checkout.session.")
    step: dict[str, Any] = {"source": EventSource.WEBHOOK, "stripe_event_id": event.stripe_id}
    paid = kind == "async_payment_succeeded" or (
        kind == "completed" and obj.get("payment_status") in ("paid", "no_payment_required")
    )
    if paid:
        amount = obj.get("amount_total")
        note = "Payment received at Stripe Checkout."
        if isinstance(amount, int) and amount != order.amount_total:
            note = (
                f"Payment received, but Stripe's total {format_money(amount, order.currency)} "
                f"differs from the order's {format_money(order.amount_total, order.currency)}."
            )
        if changes.move(order, S.PAID, note=note, **step):
            return Outcome(result=f"Order #{order.pk} paid.")
    elif kind == "completed" and order.status == S.PENDING:
        changes.note(
            order,
            note="Checkout completed; the payment is still being confirmed (asynchronous method).",
            **step,
        )
        return Outcome(result=f"Order #{order.pk} awaits an asynchronous payment.")
    elif kind == "async_payment_failed" and changes.move(
        order, S.CANCELED, note="The asynchronous payment failed.", **step
    ):
        return Outcome(result=f"Order #{order.pk} canceled: payment failed.")
    elif kind == "expired" and changes.move(
        order, S.EXPIRED, note="The Checkout Session expired unpaid.", **step
    ):
        return Outcome(result=f"Order #{order.pk} expired.")
    return Outcome(result=f"Order #{order.pk} already {order.status}; nothing to change.")


def _order_id_for_session(obj: dict) -> int | None:
    reference = obj.get("client_reference_id") or (obj.get("metadata") or {}).get("order_id")
    if reference and str(reference).isdigit():
        return int(reference)
    return None


def _on_checkout_session(event: WebhookEvent, obj: dict) -> Outcome:
    order = _order_for_session(obj)
    if order is None:
        return Outcome(WebhookStatus.IGNORED, f"No order for Checkout Session {obj.get('id')}.")
    with transaction.atomic():
        order = _lock_order(order.pk)
        changes = OrderChanges()
        outcome = _checkout_effects(changes, order, event, obj)
        changes.write()
    return outcome


def _clear_bought_items(orders: list[Order]) -> None:
    """What was just paid leaves the customers' carts (anything added since stays): a cart item
    goes when one of these orders, of the cart's owner, has a line of its price. One statement,
    run for every batch of Stripe events that pays orders."""
    sql = (  # table names come from the models, the order ids go as a parameter
        f"DELETE FROM {CartItem._meta.db_table} AS item"  # noqa: S608
        f" USING {Cart._meta.db_table} AS cart, {OrderLine._meta.db_table} AS line,"
        f" {Order._meta.db_table} AS paid"
        " WHERE paid.id = ANY(%s::bigint[]) AND line.order_id = paid.id"
        " AND cart.user_id = paid.customer_id AND item.cart_id = cart.id"
        " AND item.price_id = line.price_id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[order.pk for order in orders]])


def _on_refund(event: WebhookEvent, obj: dict) -> Outcome:
    refund = apply_refund(obj, version=event.stripe_created, stripe_event_id=event.stripe_id)
    if refund is None:
        return Outcome(WebhookStatus.IGNORED, f"No order for refund {obj.get('id')}.")
    return Outcome(result=f"Refund {obj.get('id')} of order #{refund.order_id}: {refund.status}.")


def _on_charge_refunded(event: WebhookEvent, obj: dict) -> Outcome:
    order = _order_for_payment(obj.get("payment_intent") or "", obj.get("metadata") or {})
    if order is None:
        return Outcome(WebhookStatus.IGNORED, f"No order for charge {obj.get('id')}.")
    listed = (obj.get("refunds") or {}).get("data") or []
    for refund in listed:
        apply_refund(refund, version=event.stripe_created, stripe_event_id=event.stripe_id)
    known = (
        Refund.objects.filter(order=order, status=RefundStatus.SUCCEEDED).aggregate(
            s=Sum("amount")
        )["s"]
        or 0
    )
    reported = int(obj.get("amount_refunded") or 0)
    if reported > known and stripe_api.configured() and order.stripe_payment_intent_id:
        # Recent API versions leave the refunds out of the charge: fetch them.
        for refund in stripe_api.list_refunds(payment_intent=order.stripe_payment_intent_id):
            apply_refund(refund, version=event.stripe_created, stripe_event_id=event.stripe_id)
    elif reported > known:
        # Nobody to ask: the charge's own total is the truth; keep the difference as a refund
        # made outside the console.
        with transaction.atomic():
            locked = _lock_order(order.pk)
            Refund.objects.create(
                order=locked,
                amount=min(reported - known, locked.amount_total - known),
                currency=locked.currency,
                status=RefundStatus.SUCCEEDED,
                reason=f"Reported by {event.type} {event.stripe_id} (refund ids not listed).",
            )
            _recompute_refunded(locked, stripe_event_id=event.stripe_id)
    order.refresh_from_db()
    return Outcome(
        result=f"Order #{order.pk}: {format_money(order.amount_refunded, order.currency)} refunded."
    )


HANDLERS: dict[str, Callable[[WebhookEvent, dict], Outcome]] = {
    "product.created": _on_product,
    "product.updated": _on_product,
    "product.deleted": _on_product,
    "price.created": _on_price,
    "price.updated": _on_price,
    "price.deleted": _on_price,
    "checkout.session.completed": _on_checkout_session,
    "checkout.session.async_payment_succeeded": _on_checkout_session,
    "checkout.session.async_payment_failed": _on_checkout_session,
    "checkout.session.expired": _on_checkout_session,
    "charge.refunded": _on_charge_refunded,
    "refund.created": _on_refund,
    "refund.updated": _on_refund,
    "charge.refund.updated": _on_refund,
}


# --- demo catalogue -------------------------------------------------------------------------------


def seed_demo_catalogue(products: list[dict]) -> tuple[int, int]:
    """Local demo products (no Stripe): created once, found again after. Returns (created,
    existing) prices."""
    created = existing = 0
    with transaction.atomic():
        for spec in products:
            product, _ = Product.objects.get_or_create(
                stripe_id=spec["id"],
                defaults={
                    "source": Source.DEMO,
                    "name": spec["name"],
                    "description": spec["description"],
                    "metadata": {"demo": "true"},
                },
            )
            for price in spec["prices"]:
                _, made = Price.objects.get_or_create(
                    stripe_id=price["id"],
                    defaults={
                        "product": product,
                        "source": Source.DEMO,
                        "nickname": price.get("nickname", ""),
                        "currency": price["currency"],
                        "unit_amount": price["unit_amount"],
                        "recurring_interval": price.get("interval", ""),
                    },
                )
                created, existing = (created + 1, existing) if made else (created, existing + 1)
    return created, existing
