"""Stripe events as Stripe sends them: the event envelope, and the ``Stripe-Signature`` header
computed exactly as Stripe computes it (HMAC-SHA256 with the endpoint secret over
``"<timestamp>.<raw body>"``, hex, as ``t=<timestamp>,v1=<signature>``). Written here from
Stripe's documentation, not with the code under test, so the two check each other."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time

WEBHOOK_SECRET = "whsec_test_3c9f2b7e"
_event_ids = itertools.count(1)


def event(type_: str, obj: dict, *, id: str | None = None, created: int | None = None) -> dict:
    return {
        "id": id or f"evt_test{next(_event_ids):010d}",
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created if created is not None else int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": type_,
        "data": {"object": obj},
    }


def signature(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(
    payload: bytes,
    *,
    secrets: tuple[str, ...] = (WEBHOOK_SECRET,),
    timestamp: int | None = None,
) -> str:
    """``t=…,v1=…[,v1=…]``: one v1 per secret, as Stripe sends while a secret is rolled."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={timestamp}"]
    parts += [f"v1={signature(payload, secret=s, timestamp=timestamp)}" for s in secrets]
    return ",".join(parts)


def post(client, evt: dict | bytes, *, header: str | None = None, **kwargs):
    """POST an event to /stripe/webhook, signed unless ``header`` is given."""
    payload = evt if isinstance(evt, bytes) else json.dumps(evt).encode()
    sig = signature_header(payload, **kwargs) if header is None else header
    extra = {"HTTP_STRIPE_SIGNATURE": sig} if sig else {}
    return client.post("/stripe/webhook", data=payload, content_type="application/json", **extra)
