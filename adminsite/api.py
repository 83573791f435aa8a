"""API-wide error handling: every error is JSON with a ``detail`` and, for 400s, the fields."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
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
        names = ", ".join(str(k) for k in errors)
        return f"Invalid input: {names}."
    return "Invalid input."


def conflict(detail: str) -> Response:
    return Response({"detail": detail}, status=status.HTTP_409_CONFLICT)
