"""Sets the audit context for each request: the signed-in user (lazily), the impersonator when
someone acts as another user, the client IP through trusted proxies only, the user agent and
the request id. Goes after AuthenticationMiddleware and HijackUserMiddleware."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model

from adminsite.middleware import is_api_path
from audit import context


def _impersonator(request):
    # django-hijack keeps the pks of the users who started impersonating, innermost last.
    history = request.session.get("hijack_history") if hasattr(request, "session") else None
    if not history:
        return None
    return get_user_model()._default_manager.filter(pk=history[-1]).first()


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        audit_ctx = context.AuditContext(
            # request.user is already a lazy object: the session and user are loaded only if
            # an entry is written.
            actor=context.Lazy(lambda: getattr(request, "user", None)),
            impersonator=context.Lazy(lambda: _impersonator(request)),
            ip=context.client_ip(request, trusted_proxies=settings.TRUSTED_PROXY_COUNT),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
            request_id=getattr(request, "request_id", None),
            source="api" if is_api_path(request.path_info) else "web",
        )
        token = context.enter(audit_ctx)
        try:
            return self.get_response(request)
        finally:
            context.leave(token)
