"""Preconditions for console views (pages under /admin/ outside Django's model admin).

    @require_GET
    @permission_required("tickets.view_ticket")
    def queue(request): ...

Refusals follow the role matrix (tests/roles.py): anyone who is not active staff (anonymous,
or a customer) is sent to the console login page, which tells a signed-in customer that the
console is for staff; staff without the permission get 403. An htmx request is answered with
``HX-Redirect`` instead, so a partial never swaps a login page into the middle of a page.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache

from adminsite.permissions import preload_permissions


def is_console_user(user) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def _to_login(request):
    # For a partial, come back to the page it was part of, not to the fragment's URL.
    htmx = getattr(request, "htmx", None)
    next_path = (htmx and htmx.current_url_abs_path) or request.get_full_path()
    response = redirect_to_login(next_path, login_url=reverse("admin:login"))
    if htmx:
        refusal = HttpResponse(status=204)
        refusal["HX-Redirect"] = response.url
        return refusal
    return response


def staff_required(view):
    """Active staff only; never cached, since console pages show customer data."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_console_user(request.user):
            return _to_login(request)
        return view(request, *args, **kwargs)

    return never_cache(wrapper)


def permission_required(*perms: str):
    """Active staff holding every one of ``perms`` (``app_label.codename``)."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            preload_permissions(request.user)  # one query for the view's and the page's checks
            if not request.user.has_perms(perms):
                raise PermissionDenied(f"This page needs the permission {', '.join(perms)}.")
            return view(request, *args, **kwargs)

        return staff_required(wrapper)

    return decorator
