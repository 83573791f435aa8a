"""Console pages for tidying up support work, under /admin/support/:

    <id>/merge/                      merge a duplicate ticket into another: find the target by
                                     its number (?into=1042, a preview), confirm with POST
    canned-replies/                  the canned replies agents insert into the comment form:
                                     list, add
    canned-replies/<id>/             read or edit one
    canned-replies/<id>/delete/      confirm (GET), delete (POST)

Thin views as in tickets/views.py: forms check the shape, services apply the rules and write
the audit trail; an error re-renders the page with status 400 (403 for a rule that needs
another role) naming what is wrong, having changed nothing; success redirects (303) with a
message.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods

from adminsite.decorators import permission_required
from adminsite.htmx import wants_fragment
from tickets import queries, services
from tickets.models import BODY_MAX_LENGTH, CannedReply, Comment, Ticket

VIEW = "tickets.view_ticket"
# Who may merge: merge_tickets only insists on staff. A merge is working tickets — it moves a
# conversation and closes the duplicate, which closing alone already needs change_ticket for
# (tickets/views.py change_status) — so it takes the same permission as every other change to
# a ticket: agents, leads and admins; Ops, who read tickets, may not. There is no permission
# of its own because no role would hold change_ticket and be refused merging.
WORK = "tickets.change_ticket"
VIEW_CANNED = "tickets.view_cannedreply"
# The canned-reply services only check that the actor is staff; the roles decide who keeps
# the shared snippets: Support Lead and Admin hold add/change/delete, agents and Ops read.
ADD_CANNED = "tickets.add_cannedreply"
EDIT_CANNED = "tickets.change_cannedreply"
DELETE_CANNED = "tickets.delete_cannedreply"

MERGE = "tickets/merge.html"
CANNED_LIST = "tickets/canned_replies.html"
CANNED_EDIT = "tickets/canned_reply.html"
CANNED_DELETE = "tickets/canned_reply_delete.html"
TITLE_MAX_LENGTH = CannedReply._meta.get_field("title").max_length

# "#1042", "1042", "# 1042": the number as people write it.
_TICKET_NUMBER = re.compile(r"#?\s*(\d{1,18})")


def _errors(error: ValidationError | PermissionDenied) -> list[str]:
    """A service's refusal as sentences: its messages already name the ticket or field."""
    if isinstance(error, PermissionDenied):
        return [str(error) or "You may not do this."]
    return list(error.messages)


def _status(error) -> int:
    return 403 if isinstance(error, PermissionDenied) else 400


# --- merge ---------------------------------------------------------------------------------


def _find_target(user, raw: str) -> tuple[Ticket | None, str | None]:
    """The ticket numbered ``raw`` ("#1042" or "1042") among those ``user`` may see, or why
    there is none. A read only this page makes: by number, not id, as agents quote them."""
    text = " ".join(raw.split())
    if not text:
        return None, "Enter the number of the ticket to merge into, such as #1042."
    match = _TICKET_NUMBER.fullmatch(text)
    if match is None:
        return None, f"“{text[:30]}” is not a ticket number: type it as #1042 or 1042."
    number = int(match.group(1))
    target = (
        Ticket.objects.visible_to(user)
        .select_related("requester", "assignee", "category", "merged_into")
        .defer("merged_into__search_vector", "merged_into__description")
        .filter(ticket_number=number)
        .first()
    )
    if target is None:
        return None, f"There is no ticket #{number}."
    return target, None


def _source_refusal(source: Ticket) -> str | None:
    """Why ``source`` cannot be merged anywhere."""
    return services.merge_refusal(source).get("source")


def _target_refusal(source: Ticket, target: Ticket) -> str | None:
    """Why merge_tickets would refuse ``target``. The service stays the judge: it checks again
    with both rows locked, and the POST shows its own message if things changed meanwhile."""
    return services.merge_refusal(source, target).get("target")


def _merge_page(request, source, *, into="", target=None, errors=(), status=200):
    errors = list(errors)
    context = {
        "title": f"Merge #{source.ticket_number}",
        "ticket": source,
        "source_refusal": _source_refusal(source),
        "comment_count": Comment.objects.filter(ticket=source).count(),
        "into": into,
        "target": target,
        "merge_errors": errors,
        "can_merge": target is not None and not errors,
    }
    if wants_fragment(request):
        response = TemplateResponse(request, f"{MERGE}#preview", context, status=status)
        # tickets.js swaps a 4xx fragment that says it is one: the error shows in the preview.
        response["X-Ticket-Fragment"] = "preview"
    else:
        response = TemplateResponse(request, MERGE, context, status=status)
    patch_vary_headers(response, ("HX-Request",))
    return response


@require_http_methods(["GET", "POST"])
@permission_required(VIEW, WORK)
def merge(request, pk):
    source = queries.ticket_for(request.user, pk)
    if request.method == "POST":
        return _merge_post(request, source)
    refusal = _source_refusal(source)
    if refusal:
        return _merge_page(request, source, errors=[refusal], status=400)
    if "into" not in request.GET:
        return _merge_page(request, source)
    into = request.GET["into"]
    target, error = _find_target(request.user, into)
    if target is not None:
        error = _target_refusal(source, target)
    return _merge_page(
        request,
        source,
        into=into,
        target=target,
        errors=[error] if error else [],
        status=400 if error else 200,
    )


def _merge_post(request, source):
    into = request.POST.get("into", "")
    target, error = _find_target(request.user, into)
    if target is None:
        # A duplicate that cannot be merged at all says so first, whatever was typed.
        error = _source_refusal(source) or error
        return _merge_page(request, source, into=into, errors=[error], status=400)
    try:
        services.merge_tickets(actor=request.user, source=source, target=target)
    except (ValidationError, PermissionDenied) as refusal:
        # Nothing changed (the service rolled back). Show the page as it now stands.
        source = queries.ticket_for(request.user, source.pk)
        target, _ = _find_target(request.user, into)
        return _merge_page(
            request,
            source,
            into=into,
            target=target,
            errors=_errors(refusal),
            status=_status(refusal),
        )
    messages.success(
        request,
        f"Merged #{source.ticket_number} “{source.subject}” into this ticket: its description "
        f"and comments are here now, and #{source.ticket_number} is closed with a link to it.",
    )
    return HttpResponseRedirect(reverse("tickets:ticket", args=[target.pk]), status=303)


# --- canned replies --------------------------------------------------------------------------


class CannedReplyForm(forms.Form):
    """The shape of a canned reply; whether the title is free is the service's to say. Kept
    beside its only views rather than in tickets/forms.py, which holds the ticket forms."""

    title = forms.CharField(
        label="Title",
        # The real limit is checked after spaces are collapsed, below; this one only stops
        # an absurd post early.
        max_length=1000,
        error_messages={"required": "A title is required."},
    )
    body = forms.CharField(
        label="Reply",
        widget=forms.Textarea,
        error_messages={"required": "The reply text is required."},
    )

    def clean_title(self) -> str:
        title = " ".join(self.cleaned_data["title"].split())
        if len(title) > TITLE_MAX_LENGTH:
            raise ValidationError(
                f"At most {TITLE_MAX_LENGTH} characters (this one has {len(title)})."
            )
        return title

    def clean_body(self) -> str:
        body = self.cleaned_data["body"].strip()
        if len(body) > BODY_MAX_LENGTH:
            raise ValidationError(
                f"At most {BODY_MAX_LENGTH} characters (this one has {len(body)})."
            )
        return body


def _form_errors(form) -> list[str]:
    return [
        f"{form.fields[name].label}: {error}" if name in form.fields else error
        for name, errors in form.errors.items()
        for error in errors
    ]


def _service_form_errors(error: ValidationError | PermissionDenied) -> list[str]:
    if isinstance(error, ValidationError) and hasattr(error, "error_dict"):
        labels = {"title": "Title", "body": "Reply"}
        return [
            f"{labels.get(name, name.capitalize())}: {message}"
            for name, found in error.message_dict.items()
            for message in found
        ]
    return _errors(error)


def _duplicate_title(title: str) -> list[str]:
    # Two leads adding the same title at once: the unique index turns the second away.
    return [f"Title: A canned reply titled {title!r} already exists."]


def _canned_list(request, *, form, status=200, errors=None):
    user = request.user
    context = {
        "title": "Canned replies",
        # One query however many there are; only this page shows who added them.
        "replies": list(CannedReply.objects.select_related("created_by").order_by("title")),
        "form": form,
        "form_errors": errors
        if errors is not None
        else (_form_errors(form) if form.is_bound else []),
        "can_add": user.has_perm(ADD_CANNED),
        "can_edit": user.has_perm(EDIT_CANNED),
        "can_delete": user.has_perm(DELETE_CANNED),
        "title_max_length": TITLE_MAX_LENGTH,
        "body_max_length": BODY_MAX_LENGTH,
    }
    return TemplateResponse(request, CANNED_LIST, context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_CANNED)
def canned_replies(request):
    if request.method == "GET":
        return _canned_list(request, form=CannedReplyForm())
    if not request.user.has_perm(ADD_CANNED):
        raise PermissionDenied(f"Adding canned replies needs the permission {ADD_CANNED}.")
    form = CannedReplyForm(request.POST)
    if not form.is_valid():
        return _canned_list(request, form=form, status=400)
    data = form.cleaned_data
    try:
        reply = services.create_canned_reply(
            actor=request.user, title=data["title"], body=data["body"]
        )
    except (ValidationError, PermissionDenied) as error:
        return _canned_list(
            request, form=form, status=_status(error), errors=_service_form_errors(error)
        )
    except IntegrityError:
        return _canned_list(request, form=form, status=400, errors=_duplicate_title(data["title"]))
    messages.success(request, f"Added the canned reply “{reply.title}”.")
    return HttpResponseRedirect(reverse("tickets:canned-replies"), status=303)


def _canned_page(request, reply, *, form, status=200, errors=None):
    context = {
        "title": reply.title,
        "reply": reply,
        "form": form,
        "form_errors": errors
        if errors is not None
        else (_form_errors(form) if form.is_bound else []),
        "can_edit": request.user.has_perm(EDIT_CANNED),
        "can_delete": request.user.has_perm(DELETE_CANNED),
        "title_max_length": TITLE_MAX_LENGTH,
        "body_max_length": BODY_MAX_LENGTH,
    }
    return TemplateResponse(request, CANNED_EDIT, context, status=status)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_CANNED)
def canned_reply_edit(request, pk):
    # The role is checked before the lookup, so a refusal does not tell which ids exist.
    if request.method == "POST" and not request.user.has_perm(EDIT_CANNED):
        raise PermissionDenied(f"Changing canned replies needs the permission {EDIT_CANNED}.")
    reply = get_object_or_404(CannedReply.objects.select_related("created_by"), pk=pk)
    if request.method == "GET":
        form = CannedReplyForm(initial={"title": reply.title, "body": reply.body})
        return _canned_page(request, reply, form=form)
    form = CannedReplyForm(request.POST)
    if not form.is_valid():
        return _canned_page(request, reply, form=form, status=400)
    data = form.cleaned_data
    try:
        saved = services.update_canned_reply(
            actor=request.user, reply=reply, title=data["title"], body=data["body"]
        )
    except CannedReply.DoesNotExist:
        raise Http404("This canned reply was deleted meanwhile.") from None
    except (ValidationError, PermissionDenied) as error:
        return _canned_page(
            request, reply, form=form, status=_status(error), errors=_service_form_errors(error)
        )
    except IntegrityError:
        return _canned_page(
            request, reply, form=form, status=400, errors=_duplicate_title(data["title"])
        )
    messages.success(request, f"Saved the canned reply “{saved.title}”.")
    return HttpResponseRedirect(reverse("tickets:canned-replies"), status=303)


@require_http_methods(["GET", "POST"])
@permission_required(VIEW_CANNED, DELETE_CANNED)
def canned_reply_delete(request, pk):
    """GET asks to confirm (a page that works without JavaScript); POST deletes."""
    reply = get_object_or_404(CannedReply.objects.select_related("created_by"), pk=pk)
    if request.method == "GET":
        return TemplateResponse(
            request, CANNED_DELETE, {"title": f"Delete {reply.title}", "reply": reply}
        )
    services.delete_canned_reply(actor=request.user, reply=reply)
    messages.success(request, f"Deleted the canned reply “{reply.title}”.")
    return HttpResponseRedirect(reverse("tickets:canned-replies"), status=303)
