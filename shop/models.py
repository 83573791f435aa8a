"""The shop: a catalogue mirrored from Stripe, carts, orders with their history and refunds,
and the Stripe events that drive them.

Money is always an integer amount in the currency's minor unit (cents, or yen for the
zero-decimal JPY) next to its lowercase ISO currency code, as Stripe sends it; formatting
lives in :mod:`shop.money`. Writes go through :mod:`shop.services`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

STRIPE_ID_LENGTH = 255


class Source(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    DEMO = "demo", "Demo (local)"


class Product(models.Model):
    """A Stripe Product. ``stripe_version`` is the ``created`` time (Unix seconds) of the newest
    event or API read applied, so an older event never overwrites newer state."""

    stripe_id = models.CharField(max_length=STRIPE_ID_LENGTH, unique=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.STRIPE)
    name = models.CharField(max_length=250)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)
    deleted = models.BooleanField(default=False, help_text="Deleted in Stripe.")
    images = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    stripe_created = models.DateTimeField(null=True, blank=True)
    stripe_version = models.BigIntegerField(default=0)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        permissions = [("sync_catalogue", "Can sync the catalogue from Stripe")]

    def __str__(self) -> str:
        return self.name

    @property
    def sellable(self) -> bool:
        return self.active and not self.deleted


class RecurringInterval(models.TextChoices):
    ONE_TIME = "", "One-time"
    DAY = "day", "Daily"
    WEEK = "week", "Weekly"
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class Price(models.Model):
    """A Stripe Price of a product. Prices are immutable in Stripe except for ``active``,
    ``nickname`` and metadata: a new amount is a new price, and the old one is archived."""

    stripe_id = models.CharField(max_length=STRIPE_ID_LENGTH, unique=True)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="prices")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.STRIPE)
    nickname = models.CharField(max_length=250, blank=True)
    active = models.BooleanField(default=True)
    deleted = models.BooleanField(default=False, help_text="Deleted in Stripe.")
    currency = models.CharField(max_length=3)
    # None for prices Stripe computes (tiered, customer chooses): not sold here.
    unit_amount = models.BigIntegerField(null=True, blank=True)
    recurring_interval = models.CharField(
        max_length=5, choices=RecurringInterval.choices, default="", blank=True
    )
    recurring_interval_count = models.PositiveSmallIntegerField(default=1)
    stripe_created = models.DateTimeField(null=True, blank=True)
    stripe_version = models.BigIntegerField(default=0)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id", "unit_amount", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_amount__isnull=True) | Q(unit_amount__gte=0),
                name="shop_price_amount_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="shop_price_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return self.nickname or f"{self.product_id}:{self.stripe_id}"

    @property
    def sellable(self) -> bool:
        return self.active and not self.deleted and self.unit_amount is not None


class Cart(models.Model):
    """One cart per customer. Anonymous visitors keep theirs in the session until they sign in
    (``services.merge_session_cart``)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Cart of user {self.user_id}"


MAX_QUANTITY = 99


class CartItem(models.Model):
    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="items")
    price = models.ForeignKey(Price, on_delete=models.CASCADE, related_name="+")
    quantity = models.PositiveSmallIntegerField(default=1)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["added_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["cart", "price"], name="shop_cartitem_unique_price"),
            models.CheckConstraint(
                condition=Q(quantity__gte=1, quantity__lte=MAX_QUANTITY),
                name="shop_cartitem_quantity_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × price {self.price_id}"


class OrderStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PAID = "paid", "Paid"
    FULFILLED = "fulfilled", "Fulfilled"
    CANCELED = "canceled", "Canceled"
    EXPIRED = "expired", "Expired"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


# Orders whose money was taken (revenue, refundable).
PAID_STATUSES: tuple[str, ...] = (
    OrderStatus.PAID,
    OrderStatus.FULFILLED,
    OrderStatus.PARTIALLY_REFUNDED,
    OrderStatus.REFUNDED,
)


class Order(models.Model):
    customer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    status = models.CharField(
        max_length=20, choices=OrderStatus.choices, default=OrderStatus.PENDING
    )
    currency = models.CharField(max_length=3)
    amount_total = models.BigIntegerField()
    amount_refunded = models.BigIntegerField(default=0)
    # Sent as Stripe's Idempotency-Key when creating the Checkout Session.
    checkout_idempotency_key = models.CharField(max_length=100, unique=True)
    stripe_checkout_session_id = models.CharField(
        max_length=STRIPE_ID_LENGTH, unique=True, null=True, blank=True
    )
    checkout_url = models.URLField(max_length=2000, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True)
    stripe_subscription_id = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True)
    stripe_customer_id = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True)
    payment_status = models.CharField(max_length=30, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="Canceled or expired.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("refund_order", "Can refund orders through Stripe")]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="shop_order_status_created"),
            models.Index(fields=["customer", "-created_at"], name="shop_order_customer_created"),
            models.Index(fields=["-created_at"], name="shop_order_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_total__gte=0)
                & Q(amount_refunded__gte=0)
                & Q(amount_refunded__lte=F("amount_total")),
                name="shop_order_amounts_consistent",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[a-z]{3}$"), name="shop_order_currency_iso"
            ),
        ]

    def __str__(self) -> str:
        return f"Order #{self.pk}"

    @property
    def amount_remaining(self) -> int:
        return self.amount_total - self.amount_refunded


class OrderLine(models.Model):
    """What was bought, as it was at checkout: later catalogue changes never alter it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    price = models.ForeignKey(Price, on_delete=models.SET_NULL, null=True, related_name="+")
    stripe_price_id = models.CharField(max_length=STRIPE_ID_LENGTH)
    product_name = models.CharField(max_length=250)
    unit_amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    quantity = models.PositiveSmallIntegerField()
    recurring_interval = models.CharField(max_length=5, blank=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_amount__gte=0) & Q(quantity__gte=1),
                name="shop_orderline_amounts_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product_name}"

    @property
    def amount(self) -> int:
        return self.unit_amount * self.quantity


class EventSource(models.TextChoices):
    CHECKOUT = "checkout", "Checkout"
    WEBHOOK = "webhook", "Stripe webhook"
    CONSOLE = "console", "Console"


class OrderEvent(models.Model):
    """One step of an order's history: every status change, and notable moments that do not
    change the status (the Checkout Session made, a refund asked for)."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    source = models.CharField(max_length=10, choices=EventSource.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    stripe_event_id = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["order", "created_at"], name="shop_orderevent_order")]

    def __str__(self) -> str:
        return f"Order {self.order_id}: {self.from_status or '—'} → {self.to_status}"


class RefundStatus(models.TextChoices):
    # "requested": our row exists, Stripe has not answered yet (or could not be reached).
    REQUESTED = "requested", "Requested"
    PENDING = "pending", "Pending"
    REQUIRES_ACTION = "requires_action", "Requires action"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


# Refunds that hold part of the order's remaining amount: a new refund may not exceed what
# these leave.
OPEN_REFUND_STATUSES: tuple[str, ...] = (
    RefundStatus.REQUESTED,
    RefundStatus.PENDING,
    RefundStatus.REQUIRES_ACTION,
)


class Refund(models.Model):
    """One refund attempt: made from the console (with its own idempotency key) or found in
    Stripe (made in the Stripe dashboard, reported by ``charge.refunded``)."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    stripe_refund_id = models.CharField(
        max_length=STRIPE_ID_LENGTH, unique=True, null=True, blank=True
    )
    idempotency_key = models.CharField(max_length=100, unique=True, null=True, blank=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=20, choices=RefundStatus.choices, default=RefundStatus.REQUESTED
    )
    reason = models.CharField(max_length=500, blank=True)
    failure_message = models.CharField(max_length=1000, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="shop_refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.stripe_refund_id or self.pk} of order {self.order_id}"


class WebhookStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"


class WebhookEvent(models.Model):
    """A Stripe event as received, stored before anything acts on it. ``stripe_id`` is unique:
    a redelivered event is stored once (INSERT … ON CONFLICT DO NOTHING) and processed once."""

    stripe_id = models.CharField(max_length=STRIPE_ID_LENGTH, unique=True)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField(default=False)
    api_version = models.CharField(max_length=50, blank=True)
    stripe_created = models.BigIntegerField(help_text="The event's creation time, Unix seconds.")
    object_id = models.CharField(max_length=STRIPE_ID_LENGTH, blank=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=WebhookStatus.choices, default=WebhookStatus.RECEIVED
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    result = models.CharField(max_length=500, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        indexes = [
            models.Index(fields=["-received_at"], name="shop_webhook_received"),
            models.Index(
                fields=["received_at"],
                name="shop_webhook_unfinished",
                condition=Q(status__in=["received", "failed"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"


class SyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class CatalogueSync(models.Model):
    """One run of the catalogue sync (command, hourly task or "sync now")."""

    trigger = models.CharField(max_length=20)  # command, schedule, console
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=SyncStatus.choices, default=SyncStatus.RUNNING)
    products_seen = models.PositiveIntegerField(default=0)
    prices_seen = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"Catalogue sync #{self.pk} ({self.status})"
