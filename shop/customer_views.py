"""Customer pages of the shop (/shop/): the catalogue, the cart, checkout and order history.

The catalogue and the cart are open to anonymous visitors (their cart lives in the session
and joins their own at sign-in); checkout and orders need a signed-in customer. Staff are sent
to the console's page for the same thing, as on /help/tickets/. Customers reach only their own
orders (``queries.order_for`` answers 404 for anyone else's).
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from shop import queries, services, stripe_api
from shop.forms import CartLineForm


def _staff_target(kwargs) -> str:
    pk = kwargs.get("pk")
    return reverse("shop:order", args=[pk]) if pk is not None else reverse("shop:orders")


def shoppers(view):
    """Customers and anonymous visitors; staff go to the console."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated and request.user.is_staff:
            return HttpResponseRedirect(
                reverse("shop:catalogue") if view.__name__ == "catalogue" else _staff_target(kwargs)
            )
        return view(request, *args, **kwargs)

    return never_cache(wrapper)


def customer_required(view):
    """Signed-in customers; anyone else signs in first, staff go to the console."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not (user.is_authenticated and user.is_active):
            return redirect_to_login(request.get_full_path())
        if user.is_staff:
            return HttpResponseRedirect(_staff_target(kwargs))
        return view(request, *args, **kwargs)

    return never_cache(wrapper)


def _redirect(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _errors(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [m for field_messages in error.message_dict.values() for m in field_messages]
    return list(error.messages)


def _nav(request, active: str, cart=None) -> dict:
    summary = cart if cart is not None else queries.cart_for(request.user, request.session)
    return {"shop_active": active, "cart_count": summary.count}


@require_GET
@shoppers
def catalogue(request):
    context = {
        "title": "Shop",
        "products": queries.catalogue(),
        "stripe_configured": stripe_api.configured(),
        **_nav(request, "catalogue"),
    }
    return TemplateResponse(request, "shop/customer/catalogue.html", context)


def _cart_page(request, *, status=200, errors=()):
    cart = queries.cart_for(request.user, request.session)
    context = {
        "title": "Your cart",
        "cart": cart,
        "errors": list(errors),
        "checkout_state": request.GET.get("checkout", ""),
        **_nav(request, "cart", cart),
    }
    return TemplateResponse(request, "shop/customer/cart.html", context, status=status)


@require_GET
@shoppers
def cart(request):
    return _cart_page(request)


@require_POST
@shoppers
def cart_add(request):
    form = CartLineForm(request.POST)
    if not form.is_valid():
        return _cart_page(request, status=400, errors=_form_errors(form))
    try:
        price = services.add_to_cart(
            user=request.user,
            session=request.session,
            price_id=form.cleaned_data["price"],
            quantity=form.cleaned_data["quantity"] or 1,
        )
    except ValidationError as error:
        return _cart_page(request, status=400, errors=_errors(error))
    messages.success(request, f"{price.product.name} is in your cart.")
    return _redirect(reverse("store:cart"))


@require_POST
@shoppers
def cart_update(request):
    form = CartLineForm(request.POST)
    if not form.is_valid():
        return _cart_page(request, status=400, errors=_form_errors(form))
    quantity = 0 if "remove" in request.POST else form.cleaned_data["quantity"]
    if quantity is None:
        return _cart_page(request, status=400, errors=["Enter a quantity (0 removes the item)."])
    try:
        services.set_quantity(
            user=request.user,
            session=request.session,
            price_id=form.cleaned_data["price"],
            quantity=quantity,
        )
    except ValidationError as error:
        return _cart_page(request, status=400, errors=_errors(error))
    messages.success(request, "Item removed." if quantity == 0 else "Quantity updated.")
    return _redirect(reverse("store:cart"))


def _form_errors(form) -> list[str]:
    return [message for errors in form.errors.values() for message in errors]


def _checkout_page(request, *, status=200, problems=(), stripe_error=""):
    cart = queries.cart_for(request.user, request.session)
    context = {
        "title": "Checkout",
        "cart": cart,
        "problems": list(problems) or cart.problems,
        "stripe_configured": stripe_api.configured(),
        "stripe_error": stripe_error,
        **_nav(request, "cart", cart),
    }
    return TemplateResponse(request, "shop/customer/checkout.html", context, status=status)


@require_http_methods(["GET", "POST"])
@customer_required
def checkout(request):
    """GET: review the cart, told what stops it from being paid. POST: a pending order and a
    Stripe Checkout Session, then off to Stripe to pay."""
    if request.method == "GET":
        return _checkout_page(request)
    if not stripe_api.configured():
        return _checkout_page(request, status=503)
    try:
        order = services.start_checkout(
            customer=request.user, base_url=request.build_absolute_uri("/").rstrip("/")
        )
    except services.CheckoutError as error:
        return _checkout_page(request, status=400, problems=_errors(error))
    except stripe_api.StripeUnavailableError as error:
        return _checkout_page(
            request,
            status=503,
            stripe_error=f"{error} Nothing was charged and your cart is unchanged: please try "
            "again in a few minutes.",
        )
    except stripe_api.StripeRejectedError as error:
        return _checkout_page(
            request,
            status=400,
            stripe_error=f"Stripe refused this checkout: {error} Nothing was charged and your "
            "cart is unchanged.",
        )
    return _redirect(order.checkout_url)


@require_GET
@customer_required
def orders(request):
    page = queries.customer_orders(request.user, request.GET.get("page"))
    context = {"title": "Your orders", "page": page, **_nav(request, "orders")}
    return TemplateResponse(request, "shop/customer/orders.html", context)


@require_GET
@customer_required
def order(request, pk: int):
    found = queries.order_for(request.user, pk)
    context = {
        "title": f"Order #{found.pk}",
        "order": found,
        "just_paid": request.GET.get("checkout") == "success",
        **_nav(request, "orders"),
    }
    return TemplateResponse(request, "shop/customer/order.html", context)
