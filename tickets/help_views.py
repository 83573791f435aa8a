"""Customer help pages (/help/tickets/): a signed-in customer lists their tickets, opens one,
replies, and opens a new one.

Customers reach only their own tickets: every id goes through ``queries.ticket_for``, which
answers 404 for anyone else's, so ids never reveal what exists. Internal notes are never
loaded for these pages (``comments_for(include_internal=False)``).
"""

from __future__ import annotations

from dataclasses import replace
from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from tickets import queries, services
from tickets.filters import FilterError, TicketFilters, parse_filters
from tickets.forms import CustomerReplyForm, NewTicketForm
from tickets.models import DONE_STATUSES, Channel, Status

PER_PAGE = 20
# Status tabs of the list: (query value, label); the first is the default.
TABS = [("", "All"), ("active", "Open"), (",".join(DONE_STATUSES), "Resolved")]


def customer_required(view):
    """Signed-in customers. Anyone else signs in first; staff are sent to the console's page
    for the same thing (the queue, or the ticket itself)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not (user.is_authenticated and user.is_active):
            return redirect_to_login(request.get_full_path())
        if user.is_staff:
            pk = kwargs.get("pk")
            target = (
                reverse("tickets:ticket", args=[pk]) if pk is not None else reverse("tickets:queue")
            )
            return HttpResponseRedirect(target)
        return view(request, *args, **kwargs)

    return never_cache(wrapper)


def _errors(error: ValidationError | PermissionDenied) -> list[str]:
    if isinstance(error, PermissionDenied):
        return [str(error)]
    if hasattr(error, "error_dict"):
        return [m for field_messages in error.message_dict.values() for m in field_messages]
    return list(error.messages)


@require_GET
@customer_required
def ticket_list(request):
    errors: dict[str, str] = {}
    raw_page = request.GET.get("page", "1").strip() or "1"
    if not (raw_page.isascii() and raw_page.isdigit() and len(raw_page) <= 9) or int(raw_page) < 1:
        errors["page"] = "Use a whole page number from 1 (at most 9 digits)."
    try:
        filters = parse_filters(
            request.GET,
            user=request.user,
            default_statuses=tuple(Status.values),
            default_ordering="-updatedAt",
            extra_params=frozenset({"page"}),
        )
    except FilterError as error:
        errors.update(error.errors)
        filters = TicketFilters()
    page = None
    if not errors:
        # Scoped to the requester for the counts too (queue_stats does not apply visibility).
        filters = replace(filters, requester_id=request.user.pk)
        result = queries.queue_page(
            user=request.user, filters=filters, page=int(raw_page), per_page=PER_PAGE
        )
        # A paginator over a range: the shared pager without another COUNT query.
        page = Paginator(range(result.count), PER_PAGE).page(result.number)
        page.tickets = result.tickets
    current = request.GET.get("status", "")
    context = {
        "title": "Your support requests",
        "page": page,
        "errors": errors,
        "tabs": [
            {
                "label": label,
                "url": f"?status={value}" if value else "?",
                "active": value == current,
            }
            for value, label in TABS
        ],
    }
    return TemplateResponse(
        request, "tickets/help/list.html", context, status=400 if errors else 200
    )


@require_http_methods(["GET", "POST"])
@customer_required
def new_ticket(request):
    categories = queries.category_choices()
    form = NewTicketForm(request.POST or None, categories=categories)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            ticket = services.create_ticket(
                actor=request.user,
                requester=request.user,
                subject=data["subject"],
                description=data["description"],
                category=data["category"],
                priority=data["priority"],
                channel=Channel.WEB,
            )
        except (ValidationError, PermissionDenied) as error:
            form.add_error(None, _errors(error))
        else:
            messages.success(
                request,
                f"Request #{ticket.ticket_number} is open. We will answer here and by email.",
            )
            return HttpResponseRedirect(reverse("help:ticket", args=[ticket.pk]), status=303)
    status = 400 if request.method == "POST" else 200
    return TemplateResponse(
        request,
        "tickets/help/new.html",
        {"title": "New support request", "form": form},
        status=status,
    )


def _detail(request, ticket, *, form=None, status=200):
    context = {
        "title": f"#{ticket.ticket_number} {ticket.subject}",
        "ticket": ticket,
        "comments": queries.comments_for(ticket, include_internal=False),
        "form": form or CustomerReplyForm(),
        "can_reply": ticket.status != Status.CLOSED,
    }
    return TemplateResponse(request, "tickets/help/detail.html", context, status=status)


@require_GET
@customer_required
def ticket_detail(request, pk):
    return _detail(request, queries.ticket_for(request.user, pk))


@require_POST
@customer_required
def reply(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    form = CustomerReplyForm(request.POST)
    if ticket.status == Status.CLOSED:
        # The service refuses too; this says it in the customer's terms (no "lead" to ask).
        form.add_error(None, "This request is closed. Open a new request if you need more help.")
    elif form.is_valid():
        try:
            comment = services.add_comment(
                actor=request.user, ticket=ticket, body=form.cleaned_data["body"]
            )
        except (ValidationError, PermissionDenied) as error:
            form.add_error(None, _errors(error))
        else:
            messages.success(request, "Your reply was sent to our support team.")
            url = reverse("help:ticket", args=[ticket.pk])
            return HttpResponseRedirect(f"{url}#comment-{comment.pk}", status=303)
    return _detail(request, ticket, form=form, status=400)
