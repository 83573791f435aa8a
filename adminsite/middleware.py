"""Request-wide middleware: request ids, API body limits and JSON errors under /api/."""

from __future__ import annotations

import logging
import re
import uuid

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from adminsite.logging import request_id_var

logger = logging.getLogger("adminsite.request")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def is_api_path(path: str) -> bool:
    return path.startswith("/api/")


class RequestIdMiddleware:
    """Honour a well-formed incoming ``X-Request-ID`` (else make one) and return it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class ApiBodyLimitMiddleware:
    """413 in JSON for API bodies over ``API_MAX_BODY_BYTES``, before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path_info):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error(400, "Content-Length header is not a number.")
            if length > settings.API_MAX_BODY_BYTES:
                return json_error(
                    413,
                    f"Request body is {length} bytes; the limit is {settings.API_MAX_BODY_BYTES} bytes.",
                )
        return self.get_response(request)


class ApiErrorMiddleware:
    """Every response under /api/ is JSON: Django's own HTML 404/405/500 pages become JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_api_path(request.path_info) or response.status_code < 400:
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith("application/json") or content_type.startswith("application/problem+json"):
            return response
        messages = {
            400: "Bad request.",
            403: "You do not have permission to perform this action.",
            404: "Not found.",
            405: f"Method {request.method} is not allowed here.",
            413: "Request body too large.",
        }
        return json_error(response.status_code, messages.get(response.status_code, response.reason_phrase))

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path_info):
            return None
        logger.exception("unhandled error in API request", extra={"path": request.path_info})
        return json_error(500, "Internal server error.", request_id=getattr(request, "request_id", None))


def json_error(status: int, detail: str, **extra) -> JsonResponse:
    body = {"detail": detail, **{k: v for k, v in extra.items() if v is not None}}
    return JsonResponse(body, status=status)
