"""Typed readers for settings from the environment, with clear errors naming the variable."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ImproperlyConfiguredError(Exception):
    """A setting in the environment cannot be used; the message names it."""


def get_str(name: str, *, default: str) -> str:
    return os.environ.get(name, default)


def get_bool(name: str, *, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfiguredError(
        f"{name} must be a boolean (true/false, 1/0, yes/no), got {raw!r}"
    )


def get_int(name: str, *, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise ImproperlyConfiguredError(f"{name} must be an integer, got {raw!r}") from None


def get_float(name: str, *, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw.strip())
    except ValueError:
        raise ImproperlyConfiguredError(f"{name} must be a number, got {raw!r}") from None


def get_list(name: str, *, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_email_url(url: str) -> dict[str, object]:
    """``smtp://user:pass@host:port``, ``smtp+tls://…``, ``smtp+ssl://…``, ``console://``,
    ``locmem://`` or ``dummy://`` → Django EMAIL_* settings."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    backends = {
        "smtp": "django.core.mail.backends.smtp.EmailBackend",
        "smtp+tls": "django.core.mail.backends.smtp.EmailBackend",
        "submission": "django.core.mail.backends.smtp.EmailBackend",
        "smtps": "django.core.mail.backends.smtp.EmailBackend",
        "smtp+ssl": "django.core.mail.backends.smtp.EmailBackend",
        "console": "django.core.mail.backends.console.EmailBackend",
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
        "dummy": "django.core.mail.backends.dummy.EmailBackend",
    }
    if scheme not in backends:
        raise ImproperlyConfiguredError(
            f"EMAIL_URL scheme must be one of {', '.join(sorted(backends))}, got {scheme!r}"
        )
    query = parse_qs(parts.query)
    use_ssl = scheme in {"smtps", "smtp+ssl"} or query.get("ssl") == ["true"]
    use_tls = scheme in {"smtp+tls", "submission"} or query.get("tls") == ["true"]
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfiguredError(f"EMAIL_URL has an invalid port: {url!r}") from None
    return {
        "EMAIL_BACKEND": backends[scheme],
        "EMAIL_HOST": parts.hostname or "localhost",
        "EMAIL_PORT": port or (465 if use_ssl else 587 if use_tls else 25),
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_USE_SSL": use_ssl,
    }
