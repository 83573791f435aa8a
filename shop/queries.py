"""Reads shared by the shop's customer pages, the console and the dashboard panel.

Each runs a fixed number of queries whatever the number of rows (asserted in tests/shop).
Customers reach only their own orders: every id goes through :func:`order_for`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.core.paginator import Page, Paginator
from django.db.models import Count, Prefetch, Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from shop import services
from shop.models import (
    PAID_STATUSES,
    CartItem,
    CatalogueSync,
    Order,
    OrderEvent,
    Price,
    Product,
    Refund,
    WebhookEvent,
    WebhookStatus,
)

PAGE_SIZE = 50
CUSTOMER_PAGE_SIZE = 20

_SELLABLE_PRICES = Price.objects.filter(active=True, deleted=False, unit_amount__isnull=False)


# --- customer pages -----------------------------------------------------------------------------


def catalogue() -> list[Product]:
    """Products on sale with their prices on sale (two queries)."""
    return list(
        Product.objects.filter(active=True, deleted=False)
        .filter(Q(prices__in=_SELLABLE_PRICES))
        .distinct()
        .prefetch_related(
            Prefetch(
                "prices",
                queryset=_SELLABLE_PRICES.order_by("unit_amount", "pk"),
                to_attr="on_sale",
            )
        )
        .order_by("name", "pk")
    )


@dataclass
class CartLine:
    price: Price
    quantity: int

    @property
    def amount(self) -> int:
        return (self.price.unit_amount or 0) * self.quantity

    @property
    def available(self) -> bool:
        return self.price.sellable and self.price.product.sellable


@dataclass
class CartSummary:
    lines: list[CartLine] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def totals(self) -> list[tuple[str, int]]:
        sums: dict[str, int] = {}
        for line in self.lines:
            if line.available:
                sums[line.price.currency] = sums.get(line.price.currency, 0) + line.amount
        return sorted(sums.items())


def cart_for(user, session) -> CartSummary:
    """The visitor's cart with what stops it from being paid (one query)."""
    if user.is_authenticated:
        items = list(
            CartItem.objects.filter(cart__user=user)
            .select_related("price__product")
            .order_by("added_at", "pk")
        )
        lines = [CartLine(item.price, item.quantity) for item in items]
    else:
        wanted = services.session_cart(session)
        ids = [int(k) for k in wanted if k.isdigit()]
        prices = Price.objects.select_related("product").in_bulk(ids) if ids else {}
        lines = [
            CartLine(prices[int(k)], quantity)
            for k, quantity in wanted.items()
            if k.isdigit() and int(k) in prices
        ]
        items = [CartItem(price=line.price, quantity=line.quantity) for line in lines]
    return CartSummary(lines=lines, problems=services.check_cart(items) if items else [])


def customer_orders(user, page: int) -> Page:
    orders = (
        Order.objects.filter(customer=user).prefetch_related("lines").order_by("-created_at", "-pk")
    )
    return Paginator(orders, CUSTOMER_PAGE_SIZE).get_page(page)


def order_for(user, pk: int) -> Order:
    """The customer's own order, or 404 (whether it exists or belongs to someone else)."""
    order = Order.objects.filter(customer=user, pk=pk).prefetch_related("lines", "refunds").first()
    if order is None:
        raise Http404("No such order among yours.")
    return order


# --- console --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderFilters:
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None
    customer: str = ""
    amount_min: int | None = None
    amount_max: int | None = None
    currency: str = ""


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def orders(filters: OrderFilters) -> QuerySet[Order]:
    qs = Order.objects.all()
    if filters.status == "paid_any":
        qs = qs.filter(status__in=PAID_STATUSES)
    elif filters.status:
        qs = qs.filter(status=filters.status)
    if filters.date_from:
        qs = qs.filter(created_at__gte=_day_start(filters.date_from))
    if filters.date_to:
        qs = qs.filter(created_at__lt=_day_start(filters.date_to + timedelta(days=1)))
    if filters.customer:
        text = filters.customer.strip()
        match = (
            Q(customer__username__iexact=text)
            | Q(customer__email__iexact=text)
            | Q(customer__email__istartswith=text)
            | Q(customer__username__istartswith=text)
        )
        if text.isdigit():
            match |= Q(customer_id=int(text))
        qs = qs.filter(match)
    if filters.currency:
        qs = qs.filter(currency=filters.currency)
    if filters.amount_min is not None:
        qs = qs.filter(amount_total__gte=filters.amount_min)
    if filters.amount_max is not None:
        qs = qs.filter(amount_total__lte=filters.amount_max)
    return qs


def order_page(filters: OrderFilters, page) -> Page:
    qs = (
        orders(filters)
        .select_related("customer")
        .annotate(line_count=Count("lines"))
        .order_by("-created_at", "-pk")
    )
    return Paginator(qs, PAGE_SIZE).get_page(page)


def order_totals(filters: OrderFilters) -> list[dict]:
    """Per currency: how many orders match, their total, the paid part and what was refunded
    (one query)."""
    rows = (
        orders(filters)
        .values("currency")
        .annotate(
            count=Count("pk"),
            total=Sum("amount_total"),
            paid=Sum("amount_total", filter=Q(status__in=PAID_STATUSES)),
            refunded=Sum("amount_refunded"),
        )
        .order_by("currency")
    )
    return [
        {**row, "paid": row["paid"] or 0, "net": (row["paid"] or 0) - (row["refunded"] or 0)}
        for row in rows
    ]


def order_detail(pk: int) -> Order | None:
    return (
        Order.objects.select_related("customer")
        .prefetch_related(
            "lines",
            Prefetch("events", queryset=OrderEvent.objects.select_related("actor")),
            Prefetch("refunds", queryset=Refund.objects.select_related("requested_by")),
        )
        .filter(pk=pk)
        .first()
    )


def refundable_amount(order: Order) -> int:
    """What may still be refunded: the total less refunds made or still in progress (uses the
    prefetched refunds)."""
    from shop.models import OPEN_REFUND_STATUSES

    held = sum(r.amount for r in order.refunds.all() if r.status in OPEN_REFUND_STATUSES)
    return max(0, order.amount_total - order.amount_refunded - held)


def catalogue_status() -> list[Product]:
    """Every product, archived and deleted ones too, with every price (two queries)."""
    return list(
        Product.objects.prefetch_related(
            Prefetch("prices", queryset=Price.objects.order_by("-active", "unit_amount", "pk"))
        ).order_by("-active", "name", "pk")
    )


def last_syncs(limit: int = 5) -> list[CatalogueSync]:
    return list(
        CatalogueSync.objects.select_related("requested_by").order_by("-started_at", "-pk")[:limit]
    )


def webhook_events(status: str, page) -> Page:
    qs = WebhookEvent.objects.defer("payload").order_by("-received_at", "-pk")
    if status:
        qs = qs.filter(status=status)
    return Paginator(qs, PAGE_SIZE).get_page(page)


def webhook_counts() -> dict[str, int]:
    rows = WebhookEvent.objects.values("status").annotate(n=Count("pk")).order_by()
    counts = dict.fromkeys(WebhookStatus.values, 0)
    counts.update({row["status"]: row["n"] for row in rows})
    return counts


def panel_context() -> dict:
    """The dashboard's Shop panel: today's orders and revenue, failed webhook events."""
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Order.objects.filter(created_at__gte=start)
    per_currency = list(
        today.values("currency")
        .annotate(
            count=Count("pk"),
            revenue=Sum("amount_total", filter=Q(status__in=PAID_STATUSES)),
            refunded=Sum("amount_refunded"),
        )
        .order_by("currency")
    )
    failed = WebhookEvent.objects.filter(status=WebhookStatus.FAILED).count()
    return {
        "orders_today": sum(row["count"] for row in per_currency),
        "revenue": [
            {"currency": row["currency"], "amount": (row["revenue"] or 0) - (row["refunded"] or 0)}
            for row in per_currency
        ],
        "failed_events": failed,
    }
