"""The one place that talks to Stripe: a configured ``StripeClient`` and the calls we make.

``STRIPE_SECRET_KEY`` unset means Stripe is not configured: the shop runs on locally seeded
demo products and checkout says so. ``STRIPE_API_BASE`` points the SDK at another address
(the tests' local fake Stripe). Errors reach callers as :class:`StripeUnavailableError`
(Stripe down, timing out, 5xx: try again later) or :class:`StripeRejectedError` (Stripe
refused the request; its message says why), so pages can say which.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import stripe
from django.conf import settings

# The SDK retries connection errors and 409/5xx answers (same idempotency key) this often.
NETWORK_RETRIES = 2
PAGE_SIZE = 100


class StripeNotConfiguredError(RuntimeError):
    def __init__(self):
        super().__init__(
            "Stripe is not configured (STRIPE_SECRET_KEY is not set), so payments cannot be taken."
        )


class StripeUnavailableError(RuntimeError):
    """Stripe could not be reached, timed out or failed on its side."""


class StripeRejectedError(RuntimeError):
    """Stripe refused the request (invalid, card declined, over the limit…)."""

    def __init__(self, message: str, *, code: str = ""):
        super().__init__(message)
        self.code = code


def configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def client() -> stripe.StripeClient:
    if not configured():
        raise StripeNotConfiguredError
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE} if settings.STRIPE_API_BASE else None,
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
    )


def _translate(error: stripe.StripeError) -> RuntimeError:
    if isinstance(error, stripe.APIConnectionError):
        return StripeUnavailableError(
            f"Stripe could not be reached or did not answer in time ({error.user_message or error})."
        )
    status = getattr(error, "http_status", None) or 0
    if status >= 500 or isinstance(error, stripe.RateLimitError):
        return StripeUnavailableError(f"Stripe answered with an error on its side (HTTP {status}).")
    if isinstance(error, stripe.AuthenticationError):
        return StripeUnavailableError("Stripe refused our API key (check STRIPE_SECRET_KEY).")
    message = error.user_message or str(error) or "Stripe refused the request."
    return StripeRejectedError(message, code=getattr(error, "code", "") or "")


def call(method, *args, **kwargs) -> Any:
    try:
        return method(*args, **kwargs)
    except stripe.StripeError as error:
        raise _translate(error) from error


def to_dict(obj) -> dict:
    """A StripeObject as plain JSON data."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


# --- the calls -----------------------------------------------------------------------------


def _every(pages) -> Iterator[dict]:
    try:
        for obj in pages.auto_paging_iter():
            yield to_dict(obj)
    except stripe.StripeError as error:
        raise _translate(error) from error


def iter_products() -> Iterator[dict]:
    """Every product, archived ones included (no ``active`` filter)."""
    return _every(call(client().v1.products.list, params={"limit": PAGE_SIZE}))


def iter_prices() -> Iterator[dict]:
    """Every price, archived ones included."""
    return _every(call(client().v1.prices.list, params={"limit": PAGE_SIZE}))


def retrieve(kind: str, stripe_id: str) -> dict:
    service = {
        "product": lambda c: c.v1.products,
        "price": lambda c: c.v1.prices,
        "refund": lambda c: c.v1.refunds,
        "checkout.session": lambda c: c.v1.checkout.sessions,
    }[kind](client())
    return to_dict(call(service.retrieve, stripe_id))


def create_checkout_session(params: dict, *, idempotency_key: str) -> dict:
    return to_dict(
        call(
            client().v1.checkout.sessions.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
    )


def create_refund(params: dict, *, idempotency_key: str) -> dict:
    return to_dict(
        call(
            client().v1.refunds.create, params=params, options={"idempotency_key": idempotency_key}
        )
    )


def list_refunds(*, payment_intent: str) -> list[dict]:
    params = {"payment_intent": payment_intent, "limit": PAGE_SIZE}
    return list(_every(call(client().v1.refunds.list, params=params)))
