"""Request-wide middleware: request ids, API body limits, JSON errors under /api/, and
cheaper drop-ins for django-csp's and Django's message middleware."""

from __future__ import annotations

import io
import logging
import re
import uuid
from functools import partial

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware as BaseMessageMiddleware
from django.contrib.messages.storage import default_storage
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.core.handlers.wsgi import LimitedStream
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.functional import SimpleLazyObject, empty

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
    """413 in JSON for API bodies over ``API_MAX_BODY_BYTES``, before anything reads them.

    A declared ``Content-Length`` is checked up front. A chunked body (no ``Content-Length``)
    is read here, at most one byte past the limit, when the server has already decoded the
    chunks and marks the input as terminated (gunicorn sets ``wsgi.input_terminated``).
    Django sizes the body from ``Content-Length`` alone and would otherwise see a chunked
    body as empty, so the body that was read is handed on with its length.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path_info):
            limit = settings.API_MAX_BODY_BYTES
            declared = request.META.get("CONTENT_LENGTH") or ""
            if declared:
                try:
                    length = int(declared)
                except ValueError:
                    return json_error(400, f"Content-Length header is not a number: {declared!r}.")
                if length < 0:
                    return json_error(400, f"Content-Length header is negative: {declared!r}.")
                if length > limit:
                    return json_error(
                        413, f"Request body is {length} bytes; the limit is {limit} bytes."
                    )
            elif _is_terminated_chunked_input(request):
                body = _read_at_most(request.META["wsgi.input"], limit + 1)
                if len(body) > limit:
                    return json_error(
                        413, f"Chunked request body exceeds the limit of {limit} bytes."
                    )
                # WSGIRequest reads its body through ``_stream``; this is the stream Django
                # would have built had the client sent Content-Length.
                request.META["CONTENT_LENGTH"] = str(len(body))
                request._stream = LimitedStream(io.BytesIO(body), len(body))
        return self.get_response(request)


def _is_terminated_chunked_input(request: HttpRequest) -> bool:
    encoding = request.META.get("HTTP_TRANSFER_ENCODING", "")
    return "chunked" in encoding.lower() and bool(request.META.get("wsgi.input_terminated"))


def _read_at_most(stream, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, 64 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class ApiErrorMiddleware:
    """Every response under /api/ is JSON: Django's own HTML 404/405/500 pages become JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not is_api_path(request.path_info) or response.status_code < 400:
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith("application/json") or content_type.startswith(
            "application/problem+json"
        ):
            return response
        messages = {
            400: "Bad request.",
            403: "You do not have permission to perform this action.",
            404: "Not found.",
            405: f"Method {request.method} is not allowed here.",
            413: "Request body too large.",
        }
        replacement = json_error(
            response.status_code, messages.get(response.status_code, response.reason_phrase)
        )
        for header in _KEPT_ERROR_HEADERS:
            if header in response:
                replacement[header] = response[header]
        return replacement

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path_info):
            return None
        if isinstance(exception, _CLIENT_ERRORS):
            # Django turns these into 400/403/404; __call__ then rewrites the page as JSON.
            return None
        logger.exception("unhandled error in API request", extra={"path": request.path_info})
        return json_error(
            500, "Internal server error.", request_id=getattr(request, "request_id", None)
        )


# Headers that carry meaning on an error response and must survive the rewrite to JSON.
_KEPT_ERROR_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")

# The exceptions Django's own handler answers with a 4xx rather than a 500.
_CLIENT_ERRORS = (Http404, PermissionDenied, BadRequest, SuspiciousOperation, MultiPartParserError)


def json_error(status: int, detail: str, *, request_id: str | None = None) -> JsonResponse:
    body = {"detail": detail}
    if request_id:
        body["requestId"] = request_id
    return JsonResponse(body, status=status)


# The attributes django-csp's decorators (csp_update, csp_replace, csp_override) set on a
# response to change its policy.
_CSP_RESPONSE_POLICY_ATTRS = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)


class CSPMiddleware(BaseCSPMiddleware):
    """django-csp's middleware, with the policy that comes from settings alone built once.

    A response whose view changed no policy, to a request that used no nonce (JSON, redirects,
    pages without scripts), gets exactly the headers django-csp would build: the policy of
    ``CONTENT_SECURITY_POLICY`` (and ``…_REPORT_ONLY``), which is the same string every time.
    Building it again for every response was the costliest middleware step of a webhook delivery.
    Responses with a nonce or a decorator's policy go through django-csp unchanged. The cache
    follows the settings objects, so ``override_settings`` in tests gets a fresh policy.
    """

    # (policy setting, report-only setting, their built policies and excluded path prefixes)
    _built: tuple | None = None

    def _settings_policies(self) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
        config = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        config_ro = getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
        built = self._built
        if built is None or built[0] is not config or built[1] is not config_ro:
            built = (
                config,
                config_ro,
                build_policy(),
                build_policy(report_only=True),
                tuple((config or {}).get("EXCLUDE_URL_PREFIXES", None) or ()),
                tuple((config_ro or {}).get("EXCLUDE_URL_PREFIXES", None) or ()),
            )
            self._built = built
        return built[2], built[3], built[4], built[5]

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if getattr(request, "_csp_nonce", None) is not None or any(
            getattr(response, name, None) is not None for name in _CSP_RESPONSE_POLICY_ATTRS
        ):
            return super().process_response(request, response)
        # From here on, django-csp's own steps with the prebuilt policies.
        if response.status_code in (500, 404) and settings.DEBUG:
            return response  # Django's debug pages
        policy, policy_ro, prefixes, prefixes_ro = self._settings_policies()
        path = request.path_info
        for header, value, excluded, exempt in (
            (HEADER, policy, prefixes, "_csp_exempt"),
            (HEADER_REPORT_ONLY, policy_ro, prefixes_ro, "_csp_exempt_ro"),
        ):
            if (
                value
                and header not in response
                and getattr(response, exempt, False) is False
                and not path.startswith(excluded)
            ):
                response[header] = value
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)
        return response


class _LazyMessageStorage(SimpleLazyObject):
    pass


class MessageMiddleware(BaseMessageMiddleware):
    """Django's message middleware, with the storage made on first use.

    Making it reads ``MESSAGE_STORAGE``, builds a cookie signer and a session storage; a
    request that never adds or reads a message (API calls, webhooks, most POSTs) has nothing
    to load and nothing to save, so it now skips all of that. Anything that touches
    ``request._messages`` (``messages.success``, ``get_messages``, the context processor) gets
    the real storage, which is saved on the response exactly as before.
    """

    def process_request(self, request: HttpRequest) -> None:
        request._messages = _LazyMessageStorage(partial(default_storage, request))

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        storage = getattr(request, "_messages", None)
        if type(storage) is _LazyMessageStorage and storage._wrapped is empty:
            return response  # never used: an untouched storage's update() stores nothing
        return super().process_response(request, response)
