"""Staff pages of the support module: the queue (/admin/support/) and the ticket page
(/admin/support/<id>/).

Thin views: parse the request, check access, call one service or query, and render a page, or
for htmx one of its named partials. Every form also works as a plain POST: success redirects
back (303) with a message; an error re-renders the page with status 400 (403 for a rule that
needs another role) and the message next to the form, having changed nothing.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.cache import patch_vary_headers
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from adminsite.decorators import permission_required
from adminsite.htmx import wants_fragment
from adminsite.navigation import url_exists
from adminsite.users import user_label
from tickets import presence, queries, services
from tickets.filters import (
    DEFAULT_QUEUE_ORDERING,
    ORDERINGS,
    FilterError,
    TicketFilters,
    parse_filters,
)
from tickets.forms import (
    AssignForm,
    BulkForm,
    CommentForm,
    SavedViewForm,
    StatusForm,
    TierForm,
    UpdateForm,
)
from tickets.models import CustomerTier, Priority, Status

VIEW = "tickets.view_ticket"
WORK = "tickets.change_ticket"
COMMENT = "tickets.add_comment"
SAVE_VIEWS = "tickets.add_savedview"
# Removing one's own saved view is part of keeping one's views (agents hold add and change);
# delete_savedview is the data admin's right to delete anyone's.
EDIT_VIEWS = "tickets.change_savedview"
IMPERSONATE = "impersonation.impersonate"
IMPERSONATE_URL = "/admin/impersonation/start"
SET_TIER = "tickets.change_customerprofile"
READ_AUDIT = "audit.view_auditentry"

PER_PAGE = 50
QUEUE = "tickets/queue.html"
TICKET = "tickets/ticket.html"

# Queue sort options: (ordering key, label). Column headers toggle direction.
SORTS = [
    ("-priority", "Priority"),
    ("nextDueAt", "Next due"),
    ("-createdAt", "Newest"),
    ("createdAt", "Oldest"),
    ("-updatedAt", "Recently updated"),
]
STATUS_FILTERS = [("", "Active"), ("all", "All statuses"), *Status.choices]


def _render(request, template: str, context: dict, *, partial: str | None, status: int = 200):
    name = f"{template}#{partial}" if partial else template
    response = TemplateResponse(request, name, context, status=status)
    # The same URL answers with a page or a fragment; caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    if partial:
        # htmx leaves 4xx responses unswapped; static/tickets/tickets.js swaps those that say
        # they are a fragment (a form with its errors), never an error page.
        response["X-Ticket-Fragment"] = partial
    return response


def _service_errors(error: ValidationError | PermissionDenied) -> list[str]:
    if isinstance(error, PermissionDenied):
        return [str(error) or "You may not do this."]
    if hasattr(error, "error_dict"):
        return [message for messages_ in error.message_dict.values() for message in messages_]
    return list(error.messages)


def _form_errors(form) -> list[str]:
    errors = []
    for name, field_errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else None
        label = label or (name.replace("_", " ").capitalize() if name != "__all__" else "")
        errors.extend(f"{label}: {e}" if label else e for e in field_errors)
    return errors


# --- the queue -----------------------------------------------------------------------------


def _params(query: QueryDict) -> dict[str, str]:
    """The filter parameters that carry a value, as one string each (``a,b`` for several):
    the canonical query behind every link of the queue."""
    params = {}
    for name in query:
        values = [v for v in query.getlist(name) if v.strip()]
        if values and name != "page":
            params[name] = ",".join(values)
    return params


def _canonical(params: dict[str, str], **extra) -> str:
    merged = {**params, **{k: v for k, v in extra.items() if v}}
    return urlencode(sorted(merged.items()))


def _page_number(query: QueryDict) -> tuple[int, str | None]:
    raw = query.get("page", "").strip()
    if not raw:
        return 1, None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 9) or int(raw) < 1:
        return 1, "Use a whole page number from 1 (at most 9 digits)."
    return int(raw), None


def _choices_with_current(choices: list[tuple[str, str]], current: str) -> list[tuple[str, str]]:
    """Select options, plus the current value when a link set one the select cannot show
    (``status=new,open`` from a statistics card)."""
    if current and current not in {value for value, _ in choices}:
        label = ", ".join(part.replace("_", " ").capitalize() for part in current.split(","))
        return [(current, label), *choices]
    return choices


def _sort_choices(ordering: str) -> list[tuple[str, str]]:
    """The sort select's options; a direction only a column header sets gets its own."""
    if ordering in ORDERINGS and ordering not in dict(SORTS):
        field = ordering.lstrip("-")
        label = {"priority": "Priority", "nextDueAt": "Next due", "updatedAt": "Updated"}.get(
            field, field
        )
        return [
            *SORTS,
            (ordering, f"{label} ({'descending' if ordering[0] == '-' else 'ascending'})"),
        ]
    return SORTS


def _queue_context(request, query: QueryDict, *, notice: dict | None = None) -> tuple[dict, int]:
    user = request.user
    options = queries.queue_options(user)
    categories = options.categories
    params = _params(query)
    errors: dict[str, str] = {}
    try:
        filters = parse_filters(
            query,
            user=user,
            category_slugs={c.slug: c.pk for c in categories},
            extra_params=frozenset({"page"}),
        )
    except FilterError as error:
        errors.update(error.errors)
        filters = TicketFilters()
    number, page_error = _page_number(query)
    if page_error:
        errors["page"] = page_error

    page = None
    pages: list = []
    if not errors:
        page = queries.queue_page(user=user, filters=filters, page=number, per_page=PER_PAGE)
        # A paginator over a range: the elided page list without another COUNT query. Its
        # gaps (Paginator.ELLIPSIS, a lazy translation that a comparison in the template would
        # translate again for every page link) become None.
        pages = [
            number if isinstance(number, int) else None
            for number in Paginator(range(page.count), PER_PAGE).get_elided_page_range(
                page.number, on_each_side=2, on_ends=1
            )
        ]

    current = _canonical(params)
    status_value = "" if params.get("status") == "active" else params.get("status", "")
    views = options.saved_views
    for view in views:
        view["active"] = _canonical(_params(QueryDict(view["query_string"]))) == current
    can_work = user.has_perm(WORK)
    context = {
        "title": "Support queue",
        # Reversed once: the page links to itself from every card, header, view and page link.
        "queue_url": reverse("tickets:queue"),
        "params": params,
        "current_query": current,
        "filters": filters,
        "filter_errors": errors,
        "page": page,
        "pages": pages,
        "stats": page.stats if page else None,
        "ordering": params.get("ordering", DEFAULT_QUEUE_ORDERING),
        "sorts": _sort_choices(params.get("ordering", DEFAULT_QUEUE_ORDERING)),
        # "active" is the default scope, which the select shows as its first, empty option.
        "status_value": status_value,
        "status_choices": _choices_with_current(STATUS_FILTERS, status_value),
        "priority_choices": _choices_with_current(
            [("", "Any priority"), *Priority.choices], params.get("priority", "")
        ),
        # (value, label) pairs for the selects (tickets_ui.options).
        "category_choices": [
            (c.slug, c.name if c.is_active else f"{c.name} (retired)") for c in categories
        ],
        "agent_choices": [(agent.pk, user_label(agent)) for agent in options.agents],
        "saved_views": views,
        "default_view_active": not current,
        "can_work": can_work,
        "can_save_views": user.has_perm(SAVE_VIEWS),
        "can_edit_views": user.has_perm(EDIT_VIEWS),
        "bulk_statuses": Status.choices,
        "notice": notice,
    }
    return context, 400 if errors else 200


@require_GET
@permission_required(VIEW)
def queue(request):
    context, status = _queue_context(request, request.GET)
    response = _render(
        request,
        QUEUE,
        context,
        partial="workspace" if wants_fragment(request) else None,
        status=status,
    )
    if request.htmx and status == 200:
        # The filter form sends every field, empty ones too; the address bar gets the
        # canonical query, which reads like the links the page itself builds.
        number = context["page"].number
        pushed = _canonical(context["params"], page=str(number) if number > 1 else "")
        response["HX-Push-Url"] = reverse("tickets:queue") + (f"?{pushed}" if pushed else "")
    return response


def _queue_redirect(query: str) -> HttpResponseRedirect:
    url = reverse("tickets:queue") + (f"?{query}" if query else "")
    return HttpResponseRedirect(url, status=303)


def _after_queue_change(request, *, query: str, notice: dict, status: int):
    """Answer a queue POST. For htmx: the workspace again, same filters, with the notice.
    Otherwise a success redirects to the queue with the notice as a message, and an error
    renders the queue page with the notice (status 400 or 403)."""
    if wants_fragment(request) or status >= 400:
        context, _filter_status = _queue_context(request, QueryDict(query), notice=notice)
        partial = "workspace" if wants_fragment(request) else None
        return _render(request, QUEUE, context, partial=partial, status=status)
    for text in notice["messages"]:
        messages.success(request, text)
    return _queue_redirect(query)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


@require_POST
@permission_required(VIEW, WORK)
def bulk(request):
    query = _canonical(_params(QueryDict(request.POST.get("query", ""))))
    form = BulkForm(request.POST, user=request.user)
    if not form.is_valid():
        notice = {"level": "error", "messages": _form_errors(form)}
        return _after_queue_change(request, query=query, notice=notice, status=400)
    data = form.cleaned_data
    actor, ids = request.user, data["ticket"]
    try:
        if data["action"] == "assign":
            result = services.bulk_assign(actor=actor, ticket_ids=ids, assignee=data["assignee"])
            who = data["assignee"]
            done = (
                f"Assigned {_plural(len(result.changed), 'ticket')} to {user_label(who)}"
                if who is not None
                else f"Unassigned {_plural(len(result.changed), 'ticket')}"
            )
        elif data["action"] == "status":
            result = services.bulk_change_status(actor=actor, ticket_ids=ids, status=data["status"])
            done = (
                f"Moved {_plural(len(result.changed), 'ticket')} to {Status(data['status']).label}"
            )
        else:
            result = services.bulk_close(actor=actor, ticket_ids=ids)
            done = f"Closed {_plural(len(result.changed), 'ticket')}"
    except (ValidationError, PermissionDenied) as error:
        notice = {"level": "error", "messages": _service_errors(error)}
        status = 403 if isinstance(error, PermissionDenied) else 400
        return _after_queue_change(request, query=query, notice=notice, status=status)
    if result.unchanged:
        done += f" ({_plural(len(result.unchanged), 'ticket')} already were)"
    notice = {"level": "success", "messages": [done + "."]}
    return _after_queue_change(request, query=query, notice=notice, status=200)


@require_POST
@permission_required(VIEW, SAVE_VIEWS)
def save_view(request):
    form = SavedViewForm(request.POST)
    query = _canonical(_params(QueryDict(request.POST.get("query", ""))))
    if not form.is_valid():
        notice = {"level": "error", "messages": _form_errors(form)}
        return _after_queue_change(request, query=query, notice=notice, status=400)
    try:
        parse_filters(QueryDict(query), user=request.user)
    except FilterError as error:
        problems = "; ".join(f"{k}: {v}" for k, v in error.errors.items())
        notice = {"level": "error", "messages": [f"Fix the filters before saving: {problems}"]}
        return _after_queue_change(request, query=query, notice=notice, status=400)
    try:
        view = services.save_view(
            actor=request.user, name=form.cleaned_data["name"], query_string=query
        )
    except ValidationError as error:
        notice = {"level": "error", "messages": _service_errors(error)}
        return _after_queue_change(request, query=query, notice=notice, status=400)
    notice = {"level": "success", "messages": [f"Saved the view “{view.name}”."]}
    return _after_queue_change(request, query=query, notice=notice, status=200)


@require_POST
@permission_required(VIEW, EDIT_VIEWS)
def delete_view(request, pk):
    view = queries.saved_view_for(request.user, pk)
    query = _canonical(_params(QueryDict(request.POST.get("query", ""))))
    services.delete_saved_view(actor=request.user, view=view)
    notice = {"level": "success", "messages": [f"Deleted the view “{view.name}”."]}
    return _after_queue_change(request, query=query, notice=notice, status=200)


# --- the ticket page ------------------------------------------------------------------------

# Fragments a GET renders alone (?part=<name>), each with what it needs. The ticket page
# refreshes its header and timeline this way; see templates/tickets/ticket.html.
PARTS = ("header", "actions", "timeline", "conversation", "sla")


def _history_url(obj, user) -> str | None:
    """The audit trail filtered to ``obj``, for those who may read the trail and once the
    audit pages provide it."""
    if not user.has_perm(READ_AUDIT):
        return None
    try:
        from audit.queries import history_url
    except ImportError:
        return None
    try:
        return history_url(obj)
    except NoReverseMatch:
        return None


def _ticket_options(request) -> queries.TicketOptions | None:
    """The option lists of the ticket page's forms, when the user has any of those forms."""
    user = request.user
    return queries.ticket_options() if user.has_perm(WORK) or user.has_perm(COMMENT) else None


def _actions_context(request, ticket, *, error=None, notice=None, options=None) -> dict:
    user = request.user
    can_work = user.has_perm(WORK)
    if can_work and options is None:
        options = queries.ticket_options()
    agents = options.agents if can_work else []
    transitions = services.allowed_transitions(ticket.status)
    if ticket.status == Status.CLOSED and (
        ticket.merged_into_id or not user.has_perm(services.REOPEN_CLOSED_PERMISSION)
    ):
        transitions = []
    return {
        "ticket": ticket,
        "can_work": can_work,
        # (value, label) pairs for the selects (tickets_ui.options). An assignee who no longer
        # works tickets still shows, after the agents.
        "agent_choices": [(agent.pk, user_label(agent)) for agent in agents],
        "assignee_listed": any(agent.pk == ticket.assignee_id for agent in agents),
        "category_choices": [(c.slug, c.name) for c in options.categories] if can_work else [],
        "priorities": Priority.choices,
        "transitions": [(value, Status(value).label) for value in transitions],
        "can_resolve": Status.RESOLVED in transitions,
        "can_close": Status.CLOSED in transitions,
        "can_reopen": Status.OPEN in transitions
        and ticket.status in (Status.RESOLVED, Status.CLOSED),
        "can_take": can_work
        and services.is_assignable(user)
        and ticket.assignee_id != user.pk
        and ticket.is_active,
        "action_error": error,
        "action_notice": notice,
    }


def _conversation_context(request, ticket, *, form=None, notice=None, options=None) -> dict:
    can_comment = request.user.has_perm(COMMENT)
    if can_comment and options is None:
        options = queries.ticket_options()
    return {
        "ticket": ticket,
        "comments": queries.comments_for(ticket, include_internal=True),
        "can_comment": can_comment,
        "canned_replies": options.canned_replies if can_comment else [],
        "form": form or CommentForm(ticket=ticket),
        "comment_notice": notice,
    }


def _timeline_context(request, ticket) -> dict:
    return {
        "ticket": ticket,
        "events": queries.timeline_for(ticket),
        "ticket_history_url": _history_url(ticket, request.user),
    }


def _part_context(request, ticket, part: str) -> dict:
    if part == "actions":
        return _actions_context(request, ticket)
    if part == "timeline":
        return _timeline_context(request, ticket)
    if part == "conversation":
        return _conversation_context(request, ticket)
    if part == "sla":
        # Loaded after the page (and again on every change): the SLA history card.
        targets = queries.sla_history(ticket)
        return {
            "ticket": ticket,
            "sla_targets": targets,
            "policy_name": targets[-1].policy_name if targets else "",
        }
    return {"ticket": ticket}


def _ticket_page(request, ticket, *, status=200, form=None, action_error=None):
    """The whole ticket page. Showing it shows the customer's personal data, which is
    recorded (customer.viewed) every time it is rendered."""
    user = request.user
    initial = {}
    canned_id = request.GET.get("canned", "")
    options = _ticket_options(request)
    replies = options.canned_replies if user.has_perm(COMMENT) else []
    if form is None and canned_id:
        # Without JavaScript, "Insert" reloads the page with the reply in the form.
        chosen = next((r for r in replies if str(r.pk) == canned_id), None)
        if chosen is not None:
            initial["body"] = chosen.body
    reply_to = request.GET.get("reply_to", "")
    if form is None and reply_to.isascii() and reply_to.isdigit() and len(reply_to) <= 18:
        initial["parent"] = int(reply_to)
    if form is None:
        form = CommentForm(ticket=ticket, initial=initial)
    conversation = _conversation_context(request, ticket, form=form, options=options)
    parent_id = str(form["parent"].value())
    impersonate = url_exists(IMPERSONATE_URL) and user.has_perm(IMPERSONATE)
    context = {
        "title": f"#{ticket.ticket_number} {ticket.subject}",
        **_actions_context(request, ticket, error=action_error, options=options),
        **conversation,
        **_timeline_context(request, ticket),
        **queries.customer_context(ticket),
        "impersonate_url": IMPERSONATE_URL if impersonate else None,
        "history_url": _history_url(ticket.requester, user),
        "tier_choices": CustomerTier.choices if user.has_perm(SET_TIER) else None,
        "reply_parent": next(
            (c for c in conversation["comments"] if str(c.pk) == parent_id),
            None,
        ),
        "poll_seconds": presence.POLL_SECONDS,
    }
    services.record_customer_context_viewed(actor=user, ticket=ticket)
    return _render(request, TICKET, context, partial=None, status=status)


@require_GET
@permission_required(VIEW)
def ticket_detail(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    part = request.GET.get("part", "")
    if wants_fragment(request) and part:
        if part not in PARTS:
            return HttpResponse(
                f"Unknown part {part[:40]!r}. Parts: {', '.join(PARTS)}.",
                status=400,
                content_type="text/plain",
            )
        return _render(request, TICKET, _part_context(request, ticket, part), partial=part)
    return _ticket_page(request, ticket)


def _ticket_url(ticket) -> str:
    return reverse("tickets:ticket", args=[ticket.pk])


def _triggers(*events: str, ticket) -> str:
    return json.dumps({event: {"ticket": ticket.pk} for event in events})


def _fragment_response(request, part: str, context: dict, *, status: int, events=()):
    response = _render(request, TICKET, context, partial=part, status=status)
    if events:
        # After the swap, not before: htmx fires these on the element that sent the request,
        # and if the form has been replaced meanwhile, on <body>. A form replaced before its
        # answer came would otherwise swallow them (events from detached elements never
        # reach the page's listeners).
        response["HX-Trigger-After-Swap"] = _triggers(*events, ticket=context["ticket"])
    return response


def _act(request, ticket, run, *, done: str):
    """Run one quick action (``run()`` calls its service) and answer: the inside of the actions
    card again for htmx (with ``ticketChanged`` so the header and timeline refresh), else a
    redirect."""
    try:
        changed = run()
    except (ValidationError, PermissionDenied) as error:
        status = 403 if isinstance(error, PermissionDenied) else 400
        errors = _service_errors(error)
        if wants_fragment(request):
            # The service rolled back and worked on its own locked copy: ``ticket`` is as it was.
            context = _actions_context(request, ticket, error=errors)
            return _fragment_response(request, "actions", context, status=status)
        return _ticket_page(request, ticket, status=status, action_error=errors)
    if wants_fragment(request):
        ticket = queries.ticket_for(request.user, changed.pk)
        context = _actions_context(request, ticket, notice=done)
        return _fragment_response(request, "actions", context, status=200, events=["ticketChanged"])
    messages.success(request, done)
    return HttpResponseRedirect(_ticket_url(ticket), status=303)


def _invalid(request, ticket, form):
    errors = _form_errors(form)
    if wants_fragment(request):
        context = _actions_context(request, ticket, error=errors)
        return _fragment_response(request, "actions", context, status=400)
    return _ticket_page(request, ticket, status=400, action_error=errors)


@require_POST
@permission_required(VIEW, WORK)
def assign(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    form = AssignForm(request.POST, user=request.user)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    assignee = form.cleaned_data["assignee"]
    if assignee is None:
        done = "Unassigned the ticket."
    elif assignee.pk == request.user.pk:
        done = "Assigned the ticket to you."
    else:
        done = f"Assigned the ticket to {user_label(assignee)}."
    return _act(
        request,
        ticket,
        lambda: services.assign_ticket(actor=request.user, ticket=ticket, assignee=assignee),
        done=done,
    )


@require_POST
@permission_required(VIEW, WORK)
def change_status(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    form = StatusForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    status = form.cleaned_data["status"]
    done = {
        Status.RESOLVED: "Resolved the ticket.",
        Status.CLOSED: "Closed the ticket.",
    }.get(status, f"Status set to {Status(status).label}.")
    return _act(
        request,
        ticket,
        lambda: services.change_status(actor=request.user, ticket=ticket, status=status),
        done=done,
    )


@require_POST
@permission_required(VIEW, SET_TIER)
def customer_tier(request, pk):
    """The support plan of the ticket's customer (it picks the SLA policies of their next
    tickets), set from the customer card."""
    ticket = queries.ticket_for(request.user, pk)
    form = TierForm(request.POST)
    if not form.is_valid():
        return _invalid(request, ticket, form)
    tier = form.cleaned_data["tier"]

    def run():
        services.set_customer_tier(actor=request.user, customer=ticket.requester, tier=tier)
        return ticket

    return _act(
        request,
        ticket,
        run,
        done=f"{user_label(ticket.requester)} is now on the {CustomerTier(tier).label} plan.",
    )


@require_POST
@permission_required(VIEW, WORK)
def update(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    form = UpdateForm(request.POST, categories=queries.category_choices())
    if not form.is_valid():
        return _invalid(request, ticket, form)
    priority, category = form.cleaned_data["priority"] or None, form.cleaned_data["category"]
    changed = [
        f"priority to {Priority(priority).label}" if priority else "",
        f"category to {category.name}" if category else "",
    ]
    done = "Set " + " and ".join(c for c in changed if c) + "."
    return _act(
        request,
        ticket,
        lambda: services.update_ticket(
            actor=request.user, ticket=ticket, priority=priority, category=category
        ),
        done=done,
    )


@require_POST
@permission_required(VIEW, COMMENT)
def add_comment(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    form = CommentForm(request.POST, ticket=ticket)
    comment = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            comment = services.add_comment(
                actor=request.user,
                ticket=ticket,
                body=data["body"],
                is_internal=data["is_internal"],
                parent=data["parent"],
            )
        except (ValidationError, PermissionDenied) as error:
            form.add_error(None, _service_errors(error))
    if comment is None:
        if wants_fragment(request):
            context = _conversation_context(request, ticket, form=form)
            return _fragment_response(request, "conversation", context, status=400)
        return _ticket_page(request, ticket, status=400, form=form)
    done = "Internal note added." if comment.is_internal else "Comment sent to the customer."
    if wants_fragment(request):
        # The whole conversation, not only the new comment: a reply belongs under its parent,
        # and comments others added meanwhile show up in order. The form comes back empty.
        ticket = queries.ticket_for(request.user, ticket.pk)
        # The internal-note box stays as it was, so a run of notes needs no re-ticking.
        fresh = CommentForm(ticket=ticket, initial={"is_internal": comment.is_internal})
        options = _ticket_options(request)
        context = {
            # A reply can open the ticket, so the actions card comes along (out of band): a
            # refresh of its own could land after one of its forms' answers and undo it.
            **_actions_context(request, ticket, options=options),
            **_conversation_context(request, ticket, form=fresh, notice=done, options=options),
            "new_comment_id": comment.pk,
        }
        return _fragment_response(
            request, "comment_added", context, status=200, events=["ticketChanged"]
        )
    messages.success(request, done)
    return HttpResponseRedirect(f"{_ticket_url(ticket)}#comment-{comment.pk}", status=303)


@require_GET
@permission_required(VIEW)
def ticket_presence(request, pk):
    """Polled by the open ticket page: registers the viewer, answers who else is viewing and
    whether someone else changed the ticket since the page was rendered (``seen``)."""
    ticket = queries.ticket_for(request.user, pk)
    try:
        seen = parse_datetime(request.GET.get("seen", "").strip())
    except ValueError:  # well formed but impossible, like 2026-02-30
        seen = None
    if seen is None or seen.tzinfo is None:
        return HttpResponse(
            "seen: give the ticket's updatedAt the page showed, as an ISO 8601 date-time "
            "with a time zone.",
            status=400,
            content_type="text/plain",
        )
    viewers = presence.register_viewer(ticket_id=ticket.pk, user=request.user)
    changed_by = (
        queries.changed_by_others(ticket, since=seen, user=request.user)
        if ticket.updated_at > seen
        else []
    )
    context = {
        "ticket": ticket,
        "viewers": viewers,
        "changed_by": changed_by,
        "reload_url": _ticket_url(ticket),
    }
    return _render(request, TICKET, context, partial="presence")


def support_panel_context(request) -> dict:
    """The dashboard's Support panel: counts over the active queue (two queries), each
    linking to the queue filtered to it."""
    active = queries.queue_stats(filters=TicketFilters())
    unassigned = queries.queue_stats(filters=TicketFilters(assignee="none"))["total"]
    queue_url = reverse("tickets:queue")
    rows = [
        ("open", "Open", "New or open, waiting on us", active["open"], "", "status=new,open"),
        (
            "unassigned",
            "Unassigned",
            "Active tickets nobody owns",
            unassigned,
            "amber",
            "assignee=none",
        ),
        (
            "urgent",
            "Urgent",
            "Active tickets of urgent priority",
            active["urgent"],
            "red",
            "priority=urgent",
        ),
        (
            "breached",
            "SLA breached",
            "Active tickets past a deadline",
            active["breached"],
            "red",
            "breached=true",
        ),
    ]
    return {
        "stats": active,
        "unassigned": unassigned,
        "rows": [
            {
                "key": key,
                "label": label,
                "detail": detail,
                "value": value,
                "tone": tone,
                "url": f"{queue_url}?{query}",
            }
            for key, label, detail, value, tone, query in rows
        ],
    }
