"""The impersonation console at /admin/impersonation/ and the way in and out.

``POST start`` and ``POST stop`` are the only ways to switch identity (django-hijack's own
views are not routed). Both are POST-only and CSRF-checked by the middleware; ``next`` is
followed only to a path of this site, and never to a page the impersonation may not open.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from adminsite.decorators import permission_required, staff_required
from audit.queries import history_url
from impersonation import policy, queries, services
from impersonation.forms import FilterForm, StartForm
from impersonation.policy import ImpersonationRefusedError

LIST = "impersonation/list.html"
DETAIL = "impersonation/detail.html"
START = "impersonation/start.html"


def _safe_next(request, value: str | None, *, impersonating: bool) -> str | None:
    """``value`` when it is a path on this site (and, for a session about to act as a
    customer, one that an impersonated session may open)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return None
    if not url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return None
    if impersonating and policy.blocked_action("GET", urlsplit(value).path) is not None:
        return None
    return value


def _redirect(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303  # after a POST, the browser GETs the next page
    return response


# --- the console -------------------------------------------------------------------------------


@require_GET
@permission_required(policy.VIEW_SESSIONS)
def session_list(request):
    form = FilterForm(request.GET)
    valid = form.is_valid()
    page = queries.session_page(form.filters(), request.GET.get("page")) if valid else None
    params = {key: value for key, value in request.GET.items() if key != "page" and value}
    context = {
        "title": "Impersonation",
        "form": form,
        "page": page,
        "filter_query": urlencode(params),
        "active": queries.active_sessions(),
        "start_form": StartForm() if request.user.has_perm(policy.IMPERSONATE) else None,
        "max_minutes": settings.IMPERSONATION_MAX_MINUTES,
    }
    status = 200 if valid else 400
    if request.htmx and not request.htmx.boosted:
        return TemplateResponse(request, f"{LIST}#results", context, status=status)
    return TemplateResponse(request, LIST, context, status=status)


@require_GET
@permission_required(policy.VIEW_SESSIONS)
def session_detail(request, session_id: int):
    session = queries.session_detail(session_id)
    if session is None:
        raise Http404(f"There is no impersonation session #{session_id}.")
    user = request.user
    context = {
        "title": f"Impersonation #{session.pk}",
        "session": session,
        "pages": queries.page_views(session),
        "trail": queries.trail(session),
        "trail_url": history_url(session),
        "can_end": session.is_active
        and (session.impersonator_id == user.pk or user.has_perm(policy.FORCE_END)),
        "pages_shown": queries.PAGES_SHOWN,
    }
    return TemplateResponse(request, DETAIL, context)


@require_POST
@staff_required
def end(request, session_id: int):
    """End a running session from its page: one's own (stopped), or anyone's for an admin
    (forced). The impersonating browser is sent back at its next request."""
    user = request.user
    if not (user.has_perm(policy.IMPERSONATE) or user.has_perm(policy.FORCE_END)):
        raise PermissionDenied(f"Ending impersonations needs the {policy.FORCE_END} permission.")
    session = queries.session_detail(session_id)
    if session is None:
        raise Http404(f"There is no impersonation session #{session_id}.")
    try:
        ended = services.end_session(actor=user, session=session)
    except ValidationError as exc:
        messages.info(request, exc.messages[0])
    else:
        verb = "stopped" if ended.end_reason == "stopped" else "forced to end"
        messages.success(
            request,
            f"Impersonation #{ended.pk} of {ended.customer.get_username()} {verb}. "
            f"{ended.impersonator.get_username()}'s browser returns to the console at its next click.",
        )
    if user.has_perm(policy.VIEW_SESSIONS):
        return _redirect(reverse("impersonation:detail", args=[session.pk]))
    return _redirect(reverse("admin:index"))


# --- in and out ----------------------------------------------------------------------------------


def _start_page(request, form, *, status: int, refusal: str = ""):
    ticket = form.cleaned_data.get("ticket") if hasattr(form, "cleaned_data") else None
    context = {
        "title": "Impersonation not started",
        "form": form,
        "refusal": refusal,
        "back_url": reverse("tickets:ticket", args=[ticket.pk]) if ticket else "",
        "max_minutes": settings.IMPERSONATION_MAX_MINUTES,
    }
    return TemplateResponse(request, START, context, status=status)


@require_POST
@staff_required
def start(request):
    if not request.user.has_perm(policy.IMPERSONATE):
        raise PermissionDenied(
            f"Impersonating customers needs the {policy.IMPERSONATE} permission."
        )
    form = StartForm(request.POST)
    if not form.is_valid():
        return _start_page(request, form, status=400)
    data = form.cleaned_data
    try:
        session = services.start_impersonation(
            request=request,
            actor=request.user,
            customer=data["user"],
            reason=data["reason"],
            ticket=data["ticket"],
        )
    except ImpersonationRefusedError as exc:
        return _start_page(request, form, status=403, refusal=exc.message)
    except ValidationError as exc:
        form.add_error(None, exc)
        return _start_page(request, form, status=400)
    landing = _safe_next(request, data["next"], impersonating=True) or (
        reverse("help:ticket", args=[session.ticket_id])
        if session.ticket_id
        else reverse("help:tickets")
    )
    return _redirect(landing)


@require_POST
@never_cache
def stop(request):
    """The banner's Stop button. The signed-in user is the customer here; what makes this
    allowed is the impersonation recorded in the session."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("admin:login"))
    if not services.is_impersonating(request):
        return TemplateResponse(
            request,
            "impersonation/not_impersonating.html",
            {"title": "Not impersonating"},
            status=400,
        )
    customer = request.user.get_username()
    session = services.stop_impersonation(request=request)
    messages.success(
        request, f"You stopped impersonating {customer} and are signed in as yourself again."
    )
    landing = _safe_next(request, request.POST.get("next"), impersonating=False)
    if landing is None and request.user.is_authenticated:
        if session is not None and request.user.has_perm(policy.VIEW_SESSIONS):
            landing = reverse("impersonation:detail", args=[session.pk])
        else:
            landing = reverse("admin:index")
    return _redirect(landing or reverse("admin:login"))
