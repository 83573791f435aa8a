"""A local Stripe API for the tests: the real ``stripe`` SDK talks to it over HTTP (through
``STRIPE_API_BASE``), and it answers the calls the shop makes with Stripe's JSON shapes, list
envelopes, idempotency behaviour and error format::

    {"error": {"type": "invalid_request_error", "code": "...", "message": "...", "param": "..."}}

It keeps products, prices, Checkout Sessions, payments and refunds in memory. Tests add
catalogue objects (``add_product``, ``add_price``), complete a session as a customer paying
would (``complete_session``), and inject faults: ``fail("/v1/checkout/sessions", status=500)``
answers the next matching request with a Stripe API error; ``stall(path, seconds)`` answers it
late, so a client timeout fires. Every request is kept in ``requests`` for assertions
(method, path, params, headers: the Idempotency-Key among them).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

API_KEY_PREFIX = "sk_test_"
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):08d}"


def parse_form(body: str) -> dict:
    """Stripe's form encoding (``line_items[0][price]=…``, ``metadata[k]=v``) as nested data."""
    result: dict = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = result
        for part, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(result)


def _listify(node):
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_listify(node[k]) for k in sorted(node, key=int)]
        return {k: _listify(v) for k, v in node.items()}
    return node


class StripeError(Exception):
    def __init__(
        self, status: int, message: str, *, type_="invalid_request_error", code="", param=""
    ):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message}}
        if code:
            self.body["error"]["code"] = code
        if param:
            self.body["error"]["param"] = param


@dataclass
class Fault:
    path: str
    status: int = 500
    delay: float = 0.0
    times: int = 1


@dataclass
class FakeStripe:
    products: dict = field(default_factory=dict)
    prices: dict = field(default_factory=dict)
    sessions: dict = field(default_factory=dict)
    payments: dict = field(
        default_factory=dict
    )  # payment intent id -> {"amount", "refunded", "charge", "currency"}
    refunds: dict = field(default_factory=dict)
    requests: list = field(default_factory=list)
    faults: list = field(default_factory=list)
    idempotent: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- test controls --------------------------------------------------------------------

    def add_product(
        self, *, id=None, name="Team plan", active=True, description="", created=None
    ) -> dict:
        product = {
            "id": id or new_id("prod"),
            "object": "product",
            "active": active,
            "name": name,
            "description": description or None,
            "images": [],
            "metadata": {},
            "created": created or int(time.time()) - 3600,
            "updated": int(time.time()),
            "livemode": False,
        }
        self.products[product["id"]] = product
        return product

    def add_price(
        self,
        product: dict | str,
        *,
        id=None,
        unit_amount=4900,
        currency="usd",
        active=True,
        interval=None,
        created=None,
    ) -> dict:
        price = {
            "id": id or new_id("price"),
            "object": "price",
            "active": active,
            "currency": currency,
            "unit_amount": unit_amount,
            "product": product if isinstance(product, str) else product["id"],
            "nickname": None,
            "recurring": {"interval": interval, "interval_count": 1} if interval else None,
            "type": "recurring" if interval else "one_time",
            "metadata": {},
            "created": created or int(time.time()) - 3600,
            "livemode": False,
        }
        self.prices[price["id"]] = price
        return price

    def fail(self, path: str, *, status: int = 500, times: int = 1) -> None:
        self.faults.append(Fault(path, status=status, times=times))

    def stall(self, path: str, seconds: float, *, times: int = 1) -> None:
        self.faults.append(Fault(path, status=0, delay=seconds, times=times))

    def complete_session(self, session_id: str) -> dict:
        """The customer paid: the session is complete, with a PaymentIntent and a charge."""
        session = self.sessions[session_id]
        intent = new_id("pi")
        self.payments[intent] = {
            "amount": session["amount_total"],
            "refunded": 0,
            "charge": new_id("ch"),
            "currency": session["currency"],
        }
        session.update(
            status="complete", payment_status="paid", payment_intent=intent, customer=new_id("cus")
        )
        return dict(session)

    def charge_for(self, payment_intent: str) -> dict:
        payment = self.payments[payment_intent]
        return {
            "id": payment["charge"],
            "object": "charge",
            "amount": payment["amount"],
            "amount_refunded": payment["refunded"],
            "currency": payment["currency"],
            "payment_intent": payment_intent,
            "refunded": payment["refunded"] >= payment["amount"],
            "metadata": {},
        }

    def calls(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    # --- the API -----------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict, headers: dict) -> tuple[int, dict, dict]:
        auth = headers.get("authorization", "")
        if not auth.startswith(f"Bearer {API_KEY_PREFIX}"):
            raise StripeError(401, f"Invalid API Key provided: {auth[7:15]}***")
        key = headers.get("idempotency-key")
        if method == "POST" and key:
            with self.lock:
                seen = self.idempotent.get(key)
            if seen is not None:
                if seen[0] != (path, json.dumps(params, sort_keys=True)):
                    raise StripeError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                        type_="idempotency_error",
                    )
                return seen[1], seen[2], {"Idempotent-Replayed": "true"}
        status, body = self.route(method, path, params)
        if method == "POST" and key:
            with self.lock:
                self.idempotent[key] = ((path, json.dumps(params, sort_keys=True)), status, body)
        return status, body, {}

    def route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if method == "GET" and path in ("/v1/products", "/v1/prices"):
            store = self.products if path == "/v1/products" else self.prices
            return 200, self.page(path, list(store.values()), params)
        if method == "GET" and len(parts) == 3 and parts[1] in ("products", "prices", "refunds"):
            store = {"products": self.products, "prices": self.prices, "refunds": self.refunds}[
                parts[1]
            ]
            if parts[2] not in store:
                raise StripeError(
                    404,
                    f"No such {parts[1][:-1]}: '{parts[2]}'",
                    code="resource_missing",
                    param="id",
                )
            return 200, store[parts[2]]
        if method == "GET" and path == "/v1/refunds":
            found = [
                r
                for r in self.refunds.values()
                if r["payment_intent"] == params.get("payment_intent")
            ]
            return 200, self.page(path, found, params)
        if method == "POST" and path == "/v1/checkout/sessions":
            return 200, self.create_session(params)
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            session = self.sessions.get(parts[-1])
            if session is None:
                raise StripeError(
                    404,
                    f"No such checkout.session: '{parts[-1]}'",
                    code="resource_missing",
                    param="session",
                )
            return 200, session
        if method == "POST" and path == "/v1/refunds":
            return 200, self.create_refund(params)
        raise StripeError(404, f"Unrecognized request URL ({method}: {path}).")

    def page(self, path: str, rows: list[dict], params: dict) -> dict:
        rows = sorted(rows, key=lambda r: r["id"])
        after = params.get("starting_after")
        if after:
            ids = [r["id"] for r in rows]
            rows = rows[ids.index(after) + 1 :] if after in ids else []
        limit = int(params.get("limit") or 10)
        return {"object": "list", "url": path, "has_more": len(rows) > limit, "data": rows[:limit]}

    def create_session(self, params: dict) -> dict:
        items = params.get("line_items") or []
        if not items:
            raise StripeError(
                400,
                "Missing required param: line_items.",
                code="parameter_missing",
                param="line_items",
            )
        total, currency = 0, None
        for index, item in enumerate(items):
            price = self.prices.get(item.get("price"))
            if price is None:
                raise StripeError(
                    400,
                    f"No such price: '{item.get('price')}'",
                    code="resource_missing",
                    param=f"line_items[{index}][price]",
                )
            if not price["active"]:
                raise StripeError(
                    400,
                    "The price specified is inactive. This field only accepts active prices.",
                    param=f"line_items[{index}][price]",
                )
            total += price["unit_amount"] * int(item.get("quantity") or 1)
            currency = price["currency"]
        session_id = new_id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params.get("mode", "payment"),
            "status": "open",
            "payment_status": "unpaid",
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "customer": None,
            "payment_intent": None,
            "subscription": None,
            "amount_total": total,
            "currency": currency,
            "metadata": params.get("metadata") or {},
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
        }
        self.sessions[session_id] = session
        return session

    def create_refund(self, params: dict) -> dict:
        intent = params.get("payment_intent")
        with self.lock:
            payment = self.payments.get(intent)
            if payment is None:
                raise StripeError(
                    400,
                    f"No such payment_intent: '{intent}'",
                    code="resource_missing",
                    param="payment_intent",
                )
            left = payment["amount"] - payment["refunded"]
            amount = int(params.get("amount") or left)
            if left <= 0:
                raise StripeError(
                    400,
                    f"Charge {payment['charge']} has already been refunded.",
                    code="charge_already_refunded",
                )
            if amount > left:
                raise StripeError(
                    400,
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                    code="amount_too_large",
                    param="amount",
                )
            payment["refunded"] += amount
            refund = {
                "id": new_id("re"),
                "object": "refund",
                "amount": amount,
                "currency": payment["currency"],
                "charge": payment["charge"],
                "payment_intent": intent,
                "status": "succeeded",
                "reason": params.get("reason"),
                "metadata": params.get("metadata") or {},
                "created": int(time.time()),
            }
            self.refunds[refund["id"]] = refund
        return refund


class _Handler(BaseHTTPRequestHandler):
    fake: FakeStripe

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = parse_form(url.query if method == "GET" else body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(
            {"method": method, "path": url.path, "params": params, "headers": headers}
        )
        for fault in list(self.fake.faults):
            if url.path.startswith(fault.path) and fault.times > 0:
                fault.times -= 1
                if fault.delay:
                    time.sleep(fault.delay)  # the client has given up by now
                    break
                self._send(
                    fault.status,
                    {
                        "error": {
                            "type": "api_error",
                            "message": "An unknown error occurred (injected by the test).",
                        }
                    },
                    {"Stripe-Should-Retry": "false"},
                )
                return
        try:
            status, payload, extra = self.fake.handle(method, url.path, params, headers)
        except StripeError as error:
            self._send(error.status, error.body, {"Stripe-Should-Retry": "false"})
            return
        self._send(status, payload, extra)

    def _send(self, status: int, payload: dict, headers: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", new_id("req"))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self):  # noqa: N802
        self._serve("POST")

    def do_DELETE(self):  # noqa: N802
        self._serve("DELETE")


class FakeStripeServer:
    """The fake on a free local port: ``with FakeStripeServer() as server: server.url``."""

    def __init__(self):
        self.fake = FakeStripe()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeStripeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
