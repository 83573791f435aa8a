"""The shop console at /admin/shop/ (orders, one order with its refunds, the catalogue, Stripe
events) and the Stripe webhook endpoint at ``POST /stripe/webhook``.

Permissions: ``shop.view_order`` reads orders, ``shop.refund_order`` refunds, ``shop.change_order``
marks fulfilled, ``shop.view_product`` reads the catalogue, ``shop.sync_catalogue`` syncs it,
``shop.view_webhookevent`` / ``shop.change_webhookevent`` read and reprocess events.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from adminsite.decorators import permission_required
from shop import queries, services, stripe_api
from shop.forms import OrderFilterForm, RefundForm, WebhookFilterForm
from shop.models import PAID_STATUSES, OrderStatus, WebhookEvent, WebhookStatus
from shop.money import format_money

logger = logging.getLogger(__name__)

VIEW_ORDERS = "shop.view_order"
REFUND = "shop.refund_order"
CHANGE_ORDER = "shop.change_order"
VIEW_CATALOGUE = "shop.view_product"
SYNC = "shop.sync_catalogue"
VIEW_EVENTS = "shop.view_webhookevent"
REPROCESS = "shop.change_webhookevent"

ORDERS = "shop/orders.html"
ORDER = "shop/order.html"
CATALOGUE = "shop/catalogue.html"
EVENTS = "shop/webhooks.html"


def _redirect(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _tabs(request) -> list[dict]:
    user = request.user
    tabs = [
        ("Orders", reverse("shop:orders"), VIEW_ORDERS),
        ("Catalogue", reverse("shop:catalogue"), VIEW_CATALOGUE),
        ("Stripe events", reverse("shop:webhooks"), VIEW_EVENTS),
    ]
    return [
        {"label": label, "url": url, "active": request.path == url}
        for label, url, perm in tabs
        if user.has_perm(perm)
    ]


# --- orders ----------------------------------------------------------------------------------


def _total_card(row: dict) -> dict:
    currency = row["currency"]
    count = row["count"]
    return {
        "label": f"{currency.upper()} · {count} order{'s' if count != 1 else ''}",
        "value": format_money(row["total"], currency),
        "hint": f"paid {format_money(row['paid'], currency)} · refunded "
        f"{format_money(row['refunded'] or 0, currency)} · net {format_money(row['net'], currency)}",
    }


@require_GET
@permission_required(VIEW_ORDERS)
def order_list(request):
    form = OrderFilterForm(request.GET)
    valid = form.is_valid()
    page = totals = None
    if valid:
        filters = form.filters()
        page = queries.order_page(filters, request.GET.get("page"))
        totals = [_total_card(row) for row in queries.order_totals(filters)]
    params = {key: value for key, value in request.GET.items() if key != "page" and value}
    context = {
        "title": "Shop",
        "tabs": _tabs(request),
        "form": form,
        "page": page,
        "totals": totals,
        "filter_query": urlencode(params),
        "statuses": OrderStatus,
    }
    status = 200 if valid else 400
    if request.htmx and not request.htmx.boosted:
        return TemplateResponse(request, f"{ORDERS}#results", context, status=status)
    return TemplateResponse(request, ORDERS, context, status=status)


def _order_or_404(pk: int):
    order = queries.order_detail(pk)
    if order is None:
        raise Http404(f"There is no order #{pk}.")
    return order


def _order_page(request, order, *, refund_form=None, status=200):
    refundable = queries.refundable_amount(order)
    can_refund = (
        request.user.has_perm(REFUND)
        and order.status in PAID_STATUSES
        and refundable > 0
        and bool(order.stripe_payment_intent_id)
    )
    context = {
        "title": f"Order #{order.pk}",
        "tabs": _tabs(request),
        "order": order,
        "lines": list(order.lines.all()),
        "events": list(order.events.all()),
        "refunds": list(order.refunds.all()),
        "refundable": refundable,
        "can_refund": can_refund,
        "stripe_configured": stripe_api.configured(),
        "can_fulfil": request.user.has_perm(CHANGE_ORDER) and order.status == OrderStatus.PAID,
        "refund_form": refund_form
        or RefundForm(order=order, refundable=refundable, initial={"full": False}),
    }
    return TemplateResponse(request, ORDER, context, status=status)


@require_GET
@permission_required(VIEW_ORDERS)
def order_detail(request, pk: int):
    return _order_page(request, _order_or_404(pk))


@require_POST
@permission_required(VIEW_ORDERS, REFUND)
def refund(request, pk: int):
    order = _order_or_404(pk)
    form = RefundForm(request.POST, order=order, refundable=queries.refundable_amount(order))
    if form.is_valid():
        try:
            made = services.refund_order(
                actor=request.user,
                order=order,
                amount=form.cleaned_data["amount_minor"],
                reason=form.cleaned_data.get("reason") or "",
            )
        except services.RefundError as error:
            _add_errors(form, error)
        except stripe_api.StripeUnavailableError as error:
            messages.warning(
                request,
                f"{error} The refund attempt is kept as requested with its idempotency key; "
                "Stripe's events complete it if Stripe made it. Check again in a few minutes "
                "before trying again.",
            )
            return _redirect(reverse("shop:order", args=[pk]))
        else:
            messages.success(
                request,
                f"Refund of {format_money(made.amount, made.currency)} sent to Stripe "
                f"({made.get_status_display().lower()}).",
            )
            return _redirect(reverse("shop:order", args=[pk]))
    return _order_page(request, _order_or_404(pk), refund_form=form, status=400)


def _add_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for name, errors in error.message_dict.items():
            for message in errors:
                form.add_error(name if name in form.fields else None, message)
    else:
        for message in error.messages:
            form.add_error(None, message)


@require_POST
@permission_required(VIEW_ORDERS, CHANGE_ORDER)
def fulfil(request, pk: int):
    order = _order_or_404(pk)
    try:
        services.fulfil_order(actor=request.user, order=order)
    except ValidationError as error:
        messages.error(request, error.messages[0])
    else:
        messages.success(request, f"Order #{order.pk} marked fulfilled.")
    return _redirect(reverse("shop:order", args=[pk]))


# --- catalogue -------------------------------------------------------------------------------


@require_GET
@permission_required(VIEW_CATALOGUE)
def catalogue(request):
    syncs = queries.last_syncs()
    context = {
        "title": "Catalogue",
        "tabs": _tabs(request),
        "products": queries.catalogue_status(),
        "syncs": syncs,
        "last_sync": syncs[0] if syncs else None,
        "stripe_configured": stripe_api.configured(),
        "can_sync": request.user.has_perm(SYNC),
    }
    return TemplateResponse(request, CATALOGUE, context)


@require_POST
@permission_required(VIEW_CATALOGUE, SYNC)
def sync_now(request):
    try:
        run = services.request_sync(actor=request.user)
    except ValidationError as error:
        messages.error(request, error.messages[0])
    else:
        messages.success(
            request, f"Catalogue sync #{run.pk} started; this page shows it when it is done."
        )
    return _redirect(reverse("shop:catalogue"))


# --- Stripe events ---------------------------------------------------------------------------


@require_GET
@permission_required(VIEW_EVENTS)
def webhooks(request):
    form = WebhookFilterForm(request.GET or {"status": WebhookStatus.FAILED})
    valid = form.is_valid()
    page = (
        queries.webhook_events(form.cleaned_data["status"], request.GET.get("page"))
        if valid
        else None
    )
    context = {
        "title": "Stripe events",
        "tabs": _tabs(request),
        "form": form,
        "page": page,
        "counts": queries.webhook_counts(),
        "can_reprocess": request.user.has_perm(REPROCESS),
        "webhook_secret_set": bool(services.webhook_secrets()),
    }
    return TemplateResponse(request, EVENTS, context, status=200 if valid else 400)


@require_POST
@permission_required(VIEW_EVENTS, REPROCESS)
def reprocess(request, pk: int):
    event = WebhookEvent.objects.filter(pk=pk).first()
    if event is None:
        raise Http404(f"There is no Stripe event #{pk}.")
    services.reprocess_event(actor=request.user, event=event)
    messages.success(request, f"Event {event.stripe_id} ({event.type}) queued for processing.")
    back = request.POST.get("next", "")
    if not back.startswith(reverse("shop:webhooks")):
        back = reverse("shop:webhooks")
    return _redirect(back)


# --- the webhook endpoint --------------------------------------------------------------------


@csrf_exempt
def stripe_webhook(request):
    """Stripe's deliveries: verified on the raw body, stored once, answered at once; a Celery
    task does the work. 400 for anything not signed by Stripe (nothing stored)."""
    if request.method != "POST":
        return JsonResponse({"error": "Only POST is accepted here."}, status=405)
    if len(request.body) > services.MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": "The body is too large for a Stripe event."}, status=413)
    try:
        stored, event_id = services.store_event(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except services.WebhookSignatureError as error:
        return JsonResponse({"error": f"Signature check failed: {error}"}, status=400)
    except services.WebhookPayloadError as error:
        return JsonResponse({"error": str(error)}, status=400)
    return JsonResponse({"received": True, "event": event_id, "duplicate": stored is None})
