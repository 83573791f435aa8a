from django.utils.functional import SimpleLazyObject

from adminsite.navigation import navigation_for
from adminsite.roles import role_of


def _role_label(user) -> str:
    return role_of(user) or ("Superuser" if user.is_superuser else "Staff")


def console(request):
    # django-htmx's {% htmx_script %} reads the nonce as ``csp_nonce`` (django-csp 4 exposes it
    # as request.csp_nonce and, through its own processor, as CSP_NONCE).
    context = {"csp_nonce": getattr(request, "csp_nonce", None)}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return context
    # Lazy: htmx partials and pages without the sidebar never pay for these queries.
    return {
        **context,
        "console_nav": SimpleLazyObject(lambda: navigation_for(user, request.path)),
        "console_role": SimpleLazyObject(lambda: _role_label(user)),
    }
