"""Who is acting, from where: the context every audit entry takes its actor, impersonator, IP,
user agent and request id from.

The request middleware (:class:`audit.middleware.AuditContextMiddleware`) sets it per request,
the Celery signals in :mod:`audit.signals` per task (actor ``system``, source ``task:<name>``),
and code that acts on someone's behalf sets it explicitly::

    with audit_context(actor=user, impersonator=None, ip="203.0.113.9", request_id="…"):
        record("ticket.created", target=ticket)

Values are resolved only when an entry is written: the middleware hands over ``request.user``
lazily and the impersonator as a loader, so requests that record nothing pay nothing.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

SYSTEM = "system"  # the actor of background work (Celery tasks, beat, commands)
_UNSET: Any = object()


@dataclass(frozen=True)
class AuditContext:
    # A user, SYSTEM, or None (anonymous); may be a zero-argument callable resolved on use.
    actor: Any = SYSTEM
    # The user acting under impersonation, or None; may be a zero-argument callable.
    impersonator: Any = None
    ip: str | None = None
    user_agent: str = ""
    request_id: str | None = None
    source: str = ""


# The default is a frozen dataclass: immutable, so sharing it is safe.
_current: ContextVar[AuditContext] = ContextVar("audit_context", default=AuditContext())  # noqa: B039


def current() -> AuditContext:
    return _current.get()


def get_request_id() -> str | None:
    """django-auditlog's correlation-id getter (``AUDITLOG_CID_GETTER``): its model diffs carry
    the same request id as domain events."""
    return _current.get().request_id


@contextlib.contextmanager
def audit_context(
    *,
    actor: Any = _UNSET,
    impersonator: Any = _UNSET,
    ip: str | None = _UNSET,
    user_agent: str = _UNSET,
    request_id: str | None = _UNSET,
    source: str = _UNSET,
) -> Iterator[AuditContext]:
    """Set who acts for the block; arguments left out keep their current value (so setting the
    actor inside a request keeps the request's IP and id). An IP that is not an address is
    dropped rather than stored."""
    changes = {
        name: value
        for name, value in {
            "actor": actor,
            "impersonator": impersonator,
            "ip": normalise_ip(ip) if ip is not _UNSET else _UNSET,
            "user_agent": (user_agent or "")[:512] if user_agent is not _UNSET else _UNSET,
            "request_id": request_id,
            "source": source,
        }.items()
        if value is not _UNSET
    }
    token = _current.set(replace(_current.get(), **changes))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def enter(context: AuditContext):
    """Set ``context`` until :func:`leave` is called with the returned token (for signal pairs
    such as Celery's task_prerun / task_postrun, which cannot use a ``with`` block)."""
    return _current.set(context)


def leave(token) -> None:
    _current.reset(token)


class Lazy:
    """A value computed on first use and kept (the impersonator of a request)."""

    __slots__ = ("_loader", "_loaded", "_value")

    def __init__(self, loader: Callable[[], Any]):
        self._loader = loader
        self._loaded = False
        self._value = None

    def __call__(self) -> Any:
        if not self._loaded:
            self._value = self._loader()
            self._loaded = True
        return self._value


def resolve(value: Any) -> Any:
    return (
        value()
        if isinstance(value, Lazy) or (callable(value) and not hasattr(value, "_meta"))
        else value
    )


def normalise_ip(value: str | None) -> str | None:
    """A canonical address, or None for anything that is not one. An IPv4-mapped IPv6 address
    is stored as the IPv4 address it carries."""
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def client_ip(request, *, trusted_proxies: int) -> str | None:
    """The client's address. With ``trusted_proxies`` = N > 0, each of our N proxies appended
    the address it received the request from to X-Forwarded-For, so the client is the N-th
    entry from the right; anything left of it was sent by the client and is not trusted. A
    header shorter than that, or a malformed entry, falls back to the socket address."""
    remote = request.META.get("REMOTE_ADDR")
    if trusted_proxies <= 0:
        return normalise_ip(remote)
    forwarded = [
        part.strip()
        for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if part.strip()
    ]
    if len(forwarded) >= trusted_proxies:
        candidate = normalise_ip(forwarded[-trusted_proxies])
        if candidate is not None:
            return candidate
    return normalise_ip(remote)
