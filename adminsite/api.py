"""API-wide pieces: JSON errors with a ``detail`` (and, for 400s, the fields), and throttles
whose rates come from settings at request time."""

from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404
from djangorestframework_camel_case.render import CamelCaseJSONRenderer
from djangorestframework_camel_case.util import camelize
from rest_framework import exceptions, status, throttling
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unhandled: ApiErrorMiddleware answers 500 in JSON
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data
        if isinstance(errors, list):
            errors = {"nonFieldErrors": errors}
        response.data = {"detail": _summarise(errors), "errors": errors}
    elif isinstance(exc, exceptions.ParseError):
        response.data = {"detail": f"Malformed request body: {exc.detail}"}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"])}
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _summarise(errors) -> str:
    if isinstance(errors, dict) and errors:
        # The renderer camelizes the ``errors`` keys; the summary names fields the same way.
        names = ", ".join(str(k) for k in camelize(dict.fromkeys(errors)))
        return f"Invalid input: {names}."
    return "Invalid input."


def conflict(detail: str) -> Response:
    return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)


class _SettingsRateMixin:
    """DRF binds ``THROTTLE_RATES`` once at import; reading ``API_THROTTLE_RATES`` on every
    request lets the environment (and tests, through ``override_settings``) set the rates."""

    scope: str

    def get_rate(self):
        rates = settings.API_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(
                f"API_THROTTLE_RATES has no rate for the {self.scope!r} scope."
            )
        return rates[self.scope]


class UserRateThrottle(_SettingsRateMixin, throttling.UserRateThrottle):
    """Per signed-in user (session or token), ``API_THROTTLE_RATES["user"]``."""


class AnonRateThrottle(_SettingsRateMixin, throttling.AnonRateThrottle):
    """Per client address for anonymous callers, ``API_THROTTLE_RATES["anon"]``."""


def strip_trailing_slashes(result, generator, request, public):
    """drf-spectacular postprocessing hook: our routes match with and without the slash
    (``re_path(r"…/?$")``), which the generator renders as a trailing ``/``; the documented
    paths are the contract's, without it."""
    result["paths"] = {
        (path.rstrip("/") or "/"): operations for path, operations in result["paths"].items()
    }
    return result


# --- JSON built by hand -----------------------------------------------------------------------
# List endpoints write their JSON from rows with camelCase keys already (no serializer, no
# model instances): the camel-case renderer's walk over every key would otherwise be most of a
# page's time. Errors and serializer output still go through the walk.


class CamelCased(dict):
    """Response data whose keys are camelCase already; CamelCasedRenderer does not walk it."""


class CamelCasedRenderer(CamelCaseJSONRenderer):
    def render(self, data, *args, **kwargs):
        if isinstance(data, CamelCased):
            return JSONRenderer.render(self, data, *args, **kwargs)
        return super().render(data, *args, **kwargs)  # errors: snake_case keys camelized


def iso(value) -> str | None:
    """An aware datetime as the API writes times: ISO 8601 in UTC with a ``Z``."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
