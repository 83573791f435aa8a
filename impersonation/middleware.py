"""Polices every request of an impersonated browser session.

Placed after ``AuthenticationMiddleware``, ``HijackUserMiddleware`` and
``AuditContextMiddleware``. For a session acting as a customer it, in order:

1. loads the ImpersonationSession the browser session names (one query) and ends it, giving
   the browser back to the staff member (or signing it out), when it is over: past its time
   limit (``expired``), already ended elsewhere (stopped in another tab, forced by an admin,
   swept), or no longer allowed (``revoked``: the staff member lost the permission or was
   deactivated, the customer became staff or inactive, the customer's sign-in was reset);
2. refuses blocked actions (:mod:`impersonation.policy`) with a page, or JSON under /api/;
3. runs the view with the audit context's impersonator taken from the record it just checked.
   AuditContextMiddleware already reads it from django-hijack's session key; setting it from
   the validated record here means both always agree and no extra query is spent on it;
4. records the page visited and makes sure an HTML page carries the banner.

Requests of everyone else cost nothing beyond reading their (already loaded) session.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from adminsite.middleware import is_api_path
from audit.context import audit_context
from impersonation import policy, queries, services
from impersonation.models import EndReason

logger = logging.getLogger(__name__)

BANNER_TEMPLATE = "includes/impersonation_banner.html"
BANNER_MARKER = b"data-impersonation-banner"
_BODY_OPEN = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)

_ENDED_ELSEWHERE = {
    EndReason.STOPPED: "This impersonation was stopped from another window.",
    EndReason.EXPIRED: "This impersonation reached its time limit.",
    EndReason.REVOKED: "This impersonation was revoked.",
    EndReason.FORCED: "An administrator ended this impersonation.",
}


class ImpersonationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.impersonation = None
        # Without a session cookie there is no session to read (and reading it would only
        # add "Vary: Cookie" to anonymous responses).
        if settings.SESSION_COOKIE_NAME not in request.COOKIES or not services.is_impersonating(
            request
        ):
            return self.get_response(request)

        session_id = services.current_session_id(request)
        session = queries.session_for_request(session_id)
        ended = self._check(request, session)
        if ended is not None:
            return ended

        method, path = request.method, request.path_info
        if method == "POST" and path == reverse("accounts:logout"):
            # Signing out while acting as the customer ends the impersonation first (stopped,
            # by the staff member), then signs the staff member out.
            services.stop_impersonation(request=request)
            return self.get_response(request)

        request.impersonation = session
        rule = policy.blocked_action(method, path)
        with audit_context(impersonator=session.impersonator):
            if rule is not None:
                services.record_blocked_action(session=session, rule=rule, method=method, path=path)
                response = self._refuse(request, rule)
            else:
                response = self.get_response(request)
        if (
            path.rstrip("/") != policy.STOP_PATH
            and services.current_session_id(request) == session.pk
        ):
            services.record_page_view(
                session_id=session.pk,
                method=method,
                path=request.get_full_path(),
                status_code=response.status_code,
                blocked=rule is not None,
            )
            self._add_banner(request, response)
            # Customer pages seen by staff stay out of every cache, the browser's included.
            add_never_cache_headers(response)
        return response

    # --- is the session still good? -------------------------------------------------------------

    def _check(self, request, session):
        """None while the session may go on; otherwise end it and answer the request."""
        if session is None:
            # The browser names a session that does not exist (or hijack was used without one).
            services.end_for_request(
                request=request, session_id=None, reason=EndReason.REVOKED, sign_out=True
            )
            return self._ended(
                request, None, "This impersonation has no record, so you were signed out."
            )
        if not session.is_active:
            services.end_for_request(
                request=request, session_id=session.pk, reason=session.end_reason
            )
            return self._ended(request, session, _ENDED_ELSEWHERE[session.end_reason])
        if timezone.now() >= session.expires_at:
            minutes = round((session.expires_at - session.started_at).total_seconds() / 60)
            services.end_for_request(
                request=request, session_id=session.pk, reason=EndReason.EXPIRED
            )
            return self._ended(
                request,
                session,
                f"Your impersonation of {session.customer.get_username()} ended: it reached its "
                f"{minutes}-minute limit.",
            )
        refusal = policy.staff_refusal(session.impersonator) or policy.target_refusal(
            staff=session.impersonator, target=session.customer
        )
        if refusal is not None:
            services.end_for_request(
                request=request,
                session_id=session.pk,
                reason=EndReason.REVOKED,
                detail=refusal.message,
            )
            return self._ended(
                request,
                session,
                f"Your impersonation of {session.customer.get_username()} was revoked: {refusal.message}",
            )
        if request.user.pk != session.customer_id:
            # The customer's sign-in no longer verifies (their password changed): the session
            # was flushed underneath us. Nothing of it can be trusted.
            services.end_for_request(
                request=request,
                session_id=session.pk,
                reason=EndReason.REVOKED,
                detail="the customer's sign-in changed",
                sign_out=True,
            )
            return self._ended(
                request,
                session,
                "The customer's sign-in changed during the impersonation, so you were signed out.",
            )
        return None

    def _ended(self, request, session, message: str):
        user = request.user
        if not user.is_authenticated:
            destination = reverse("admin:login")
        elif session is not None and user.has_perm(policy.VIEW_SESSIONS):
            destination = reverse("impersonation:detail", args=[session.pk])
        else:
            destination = reverse("admin:index")
        if is_api_path(request.path_info):
            return JsonResponse({"detail": message, "code": "impersonation_ended"}, status=403)
        messages.warning(request, message)
        if getattr(request, "htmx", False):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = destination
            return response
        response = HttpResponseRedirect(destination)
        response.status_code = 303
        return response

    # --- blocked actions -----------------------------------------------------------------------

    def _refuse(self, request, rule):
        if is_api_path(request.path_info):
            return JsonResponse(
                {"detail": rule.message, "code": "impersonation_blocked", "rule": rule.name},
                status=403,
            )
        response = TemplateResponse(
            request,
            "impersonation/blocked.html",
            {"rule": rule, "title": "Not while impersonating"},
            status=403,
        )
        return response.render()

    # --- the banner ----------------------------------------------------------------------------

    def _add_banner(self, request, response) -> None:
        """Every HTML page of an impersonated session shows the banner. The layouts render it;
        a page that does not use them gets it inserted after <body>. htmx fragments are part
        of a page that has it already."""
        htmx = getattr(request, "htmx", None)
        if (
            (htmx and not htmx.boosted)
            or 300 <= response.status_code < 400
            or response.status_code == 204
        ):
            return
        content_type = response.get("Content-Type", "").split(";")[0].strip()
        if (
            content_type != "text/html"
            or getattr(response, "streaming", False)
            or response.get("Content-Encoding")
            or not hasattr(response, "content")
        ):
            return
        if hasattr(response, "render") and not response.is_rendered:
            response.render()
        content = response.content
        if BANNER_MARKER in content:
            return
        banner = render_to_string(BANNER_TEMPLATE, {}, request=request).encode(response.charset)
        match = _BODY_OPEN.search(content)
        at = match.end() if match else 0
        response.content = content[:at] + banner + content[at:]
        if "Content-Length" in response:
            response["Content-Length"] = str(len(response.content))
