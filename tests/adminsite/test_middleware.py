"""The drop-ins for django-csp's and Django's message middleware: the same headers and
messages as the originals, with less work on requests that need none."""

from __future__ import annotations

import pytest
from csp.exceptions import CSPNonceError
from csp.middleware import CSPMiddleware as LibraryCSPMiddleware
from csp.utils import build_policy
from django.contrib import messages
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse, JsonResponse
from django.test import RequestFactory, override_settings
from django.utils.functional import empty

from adminsite.middleware import CSPMiddleware, MessageMiddleware

factory = RequestFactory()


def _csp_headers(middleware_class, make_response, path="/stripe/webhook"):
    request = factory.get(path)
    middleware = middleware_class(lambda request: make_response(request))
    response = middleware(request)
    return {
        name: response[name]
        for name in ("Content-Security-Policy", "Content-Security-Policy-Report-Only")
        if name in response
    }, request


@pytest.mark.parametrize(
    "make_response",
    [
        pytest.param(lambda request: JsonResponse({"ok": True}), id="plain"),
        pytest.param(
            lambda request: HttpResponse(f"<script nonce='{request.csp_nonce}'></script>"),
            id="nonce",
        ),
        pytest.param(
            lambda request: _with(HttpResponse(), _csp_update={"img-src": ["https://a.test"]}),
            id="update",
        ),
        pytest.param(
            lambda request: _with(HttpResponse(), _csp_replace={"img-src": ["https://b.test"]}),
            id="replace",
        ),
        pytest.param(
            lambda request: _with(HttpResponse(), _csp_config={"default-src": ["'none'"]}),
            id="override",
        ),
        pytest.param(lambda request: _with(HttpResponse(), _csp_exempt=True), id="exempt"),
        pytest.param(
            lambda request: _with(HttpResponse(), **{"Content-Security-Policy": "set by view"}),
            id="view-header",
        ),
    ],
)
def test_csp_headers_are_django_csps_own(make_response):
    ours, _ = _csp_headers(CSPMiddleware, make_response)
    library, _ = _csp_headers(LibraryCSPMiddleware, make_response)
    if "nonce" in ours.get("Content-Security-Policy", ""):  # a new nonce for each request
        assert "'nonce-" in library["Content-Security-Policy"]
    else:
        assert ours == library


def _with(response, **attributes):
    for name, value in attributes.items():
        if name.startswith("_"):
            setattr(response, name, value)
        else:
            response[name] = value
    return response


def test_a_response_without_nonce_gets_the_settings_policy():
    headers, request = _csp_headers(CSPMiddleware, lambda request: JsonResponse({}))
    assert headers == {"Content-Security-Policy": build_policy()}
    assert "'nonce-" not in headers["Content-Security-Policy"]
    with pytest.raises(CSPNonceError):  # too late to ask for a nonce, as with django-csp
        str(request.csp_nonce)


def test_the_prebuilt_policy_follows_the_settings():
    middleware = CSPMiddleware(lambda request: JsonResponse({}))  # one instance throughout

    def headers(path="/stripe/webhook"):
        response = middleware(factory.get(path))
        return {
            name: {part.strip() for part in response[name].split(";")}
            for name in ("Content-Security-Policy", "Content-Security-Policy-Report-Only")
            if name in response
        }

    before = headers()
    policy = {"DIRECTIVES": {"default-src": ["'none'"]}}
    report_only = {"DIRECTIVES": {"img-src": ["'self'"]}, "EXCLUDE_URL_PREFIXES": ["/skip/"]}
    with override_settings(
        CONTENT_SECURITY_POLICY=policy, CONTENT_SECURITY_POLICY_REPORT_ONLY=report_only
    ):
        during = headers()
        excluded = headers("/skip/x")
    after = headers()
    assert during == {
        "Content-Security-Policy": {"default-src 'none'"},
        "Content-Security-Policy-Report-Only": {"default-src 'self'", "img-src 'self'"},
    }
    assert excluded == {"Content-Security-Policy": {"default-src 'none'"}}
    assert before == after
    assert before["Content-Security-Policy"] == {p.strip() for p in build_policy().split(";")}


# --- messages ----------------------------------------------------------------------------------


def _messages_stack(middleware_class, view):
    return SessionMiddleware(middleware_class(view))


def test_a_request_that_uses_no_message_builds_no_storage():
    seen = []

    def view(request):
        seen.append(request)
        return HttpResponse("ok")

    response = _messages_stack(MessageMiddleware, view)(factory.get("/"))
    assert response.cookies == {}  # nothing stored, no cookie touched
    assert seen[0]._messages._wrapped is empty  # the storage was never made


@pytest.mark.django_db
@pytest.mark.parametrize("middleware_class", [MessageMiddleware, DjangoMessageMiddleware])
def test_messages_reach_the_next_request_as_with_djangos_middleware(middleware_class):
    def add(request):
        messages.success(request, "Saved.")
        return HttpResponse("added")

    shown = []

    def show(request):
        shown.extend(str(m) for m in messages.get_messages(request))
        return HttpResponse("shown")

    first = _messages_stack(middleware_class, add)(factory.post("/"))
    assert "messages" in first.cookies
    second_request = factory.get("/")
    second_request.COOKIES["messages"] = first.cookies["messages"].value
    second = _messages_stack(middleware_class, show)(second_request)
    assert shown == ["Saved."]
    assert second.cookies["messages"].value == ""  # read, so cleared
