"""Every write to tickets. One function per use case, keyword-only, with an explicit actor.

Each runs in ``transaction.atomic``, locks the ticket row first (``select_for_update``) so two
agents changing the same ticket at once are applied one after the other — the second sees
the first's result, and both land in order in the timeline — and writes its audit event and
timeline entry in the same transaction. Emails are queued with ``transaction.on_commit`` so
a rolled-back change never mails anyone.

Rule violations raise ``django.core.exceptions.ValidationError`` with a dict naming the field;
acting beyond one's role raises ``PermissionDenied``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_slug
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from adminsite.users import user_label
from audit.services import record
from tickets import emails, tasks
from tickets.models import (
    ACTIVE_STATUSES,
    BODY_MAX_LENGTH,
    MAX_TAGS,
    SUBJECT_MAX_LENGTH,
    TAG_MAX_LENGTH,
    CannedReply,
    Category,
    Channel,
    Comment,
    EmailNotification,
    EventKind,
    Priority,
    SavedView,
    Status,
    Ticket,
    TicketEvent,
)

REOPEN_CLOSED_PERMISSION = "tickets.reopen_closed_ticket"
WORK_PERMISSION = "tickets.change_ticket"
BULK_LIMIT = 500

# Allowed status changes. A closed ticket reopens only through a lead (REOPEN_CLOSED_PERMISSION);
# ``new`` is only ever the starting state.
TRANSITIONS: dict[str, frozenset[str]] = {
    Status.NEW: frozenset(
        {Status.OPEN, Status.PENDING, Status.ON_HOLD, Status.RESOLVED, Status.CLOSED}
    ),
    Status.OPEN: frozenset({Status.PENDING, Status.ON_HOLD, Status.RESOLVED, Status.CLOSED}),
    Status.PENDING: frozenset({Status.OPEN, Status.ON_HOLD, Status.RESOLVED, Status.CLOSED}),
    Status.ON_HOLD: frozenset({Status.OPEN, Status.PENDING, Status.RESOLVED, Status.CLOSED}),
    Status.RESOLVED: frozenset({Status.OPEN, Status.CLOSED}),
    Status.CLOSED: frozenset({Status.OPEN}),
}

_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


def allowed_transitions(status: str) -> list[str]:
    """Next statuses from ``status``, in vocabulary order (for pickers and error messages)."""
    return [s for s in Status.values if s in TRANSITIONS.get(status, ())]


# --- helpers ------------------------------------------------------------------------------


def _lock(ticket_id: int) -> Ticket:
    return (
        Ticket.objects.select_for_update(of=("self",))
        .select_related("category", "requester", "assignee")
        .get(pk=ticket_id)
    )


def _event(ticket: Ticket, kind: str, *, actor, from_value="", to_value="", at=None) -> TicketEvent:
    return TicketEvent.objects.create(
        ticket=ticket,
        kind=kind,
        actor=actor if getattr(actor, "pk", None) else None,
        from_value=str(from_value)[:300],
        to_value=str(to_value)[:300],
        created_at=at or timezone.now(),
    )


def _clean_subject(subject: str) -> str:
    subject = " ".join((subject or "").split())
    if not subject:
        raise ValidationError({"subject": "A subject is required."})
    if len(subject) > SUBJECT_MAX_LENGTH:
        raise ValidationError(
            {"subject": f"At most {SUBJECT_MAX_LENGTH} characters (got {len(subject)})."}
        )
    return subject


def _clean_body(body: str, *, field_name: str) -> str:
    body = (body or "").strip()
    if not body:
        raise ValidationError({field_name: "This field may not be blank."})
    if len(body) > BODY_MAX_LENGTH:
        raise ValidationError(
            {field_name: f"At most {BODY_MAX_LENGTH} characters (got {len(body)})."}
        )
    return body


def clean_tags(tags: Iterable[str]) -> list[str]:
    """Lower-case, de-duplicated, validated tags in the order given."""
    cleaned: list[str] = []
    for tag in tags:
        value = str(tag).strip().lower()
        if not value:
            continue
        if len(value) > TAG_MAX_LENGTH or not _TAG.match(value):
            raise ValidationError(
                {
                    "tags": f"Invalid tag {value[:60]!r}: use up to {TAG_MAX_LENGTH} lower-case letters, digits, '-', '_' or '.'."
                }
            )
        if value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > MAX_TAGS:
        raise ValidationError({"tags": f"At most {MAX_TAGS} tags."})
    return cleaned


def _check_priority(priority: str) -> str:
    if priority not in Priority.values:
        raise ValidationError(
            {
                "priority": f"Unknown priority {priority!r}. Allowed values: {', '.join(Priority.values)}."
            }
        )
    return priority


def _check_category(category: Category) -> Category:
    if not category.is_active:
        raise ValidationError({"category": f"Category {category.slug!r} is no longer in use."})
    return category


def is_assignable(user) -> bool:
    return bool(user and user.is_active and user.is_staff and user.has_perm(WORK_PERMISSION))


def _check_assignee(assignee) -> None:
    if assignee is not None and not is_assignable(assignee):
        raise ValidationError(
            {
                "assignee": f"{assignee.get_username()} is not an active staff member who works tickets."
            }
        )


def _require_staff(actor, what: str) -> None:
    if not actor.is_staff:
        raise PermissionDenied(f"Only staff can {what}.")


def _require_requester_or_staff(actor, ticket: Ticket) -> None:
    if not actor.is_staff and ticket.requester_id != actor.pk:
        raise PermissionDenied("You can only act on your own tickets.")


def _on_commit(task, *args) -> None:
    # robust: a broker outage after commit is logged, never turned into an error for a
    # change that is already saved.
    transaction.on_commit(partial(task.delay, *args), robust=True)


# --- create and update ---------------------------------------------------------------------


@transaction.atomic
def create_ticket(
    *,
    actor,
    subject: str,
    description: str,
    category: Category,
    requester,
    priority: str = Priority.NORMAL,
    channel: str = Channel.WEB,
    tags: Sequence[str] = (),
    assignee=None,
) -> Ticket:
    """Open a ticket for ``requester`` (a customer). A customer may open tickets only for
    themselves; staff open them for any customer and may assign at once."""
    if not actor.is_staff and requester.pk != actor.pk:
        raise PermissionDenied("Customers can only open tickets for themselves.")
    if requester.is_staff or not requester.is_active:
        raise ValidationError({"requester": "The requester must be an active customer account."})
    if assignee is not None:
        _require_staff(actor, "assign tickets")
        _check_assignee(assignee)
    if channel not in Channel.values:
        raise ValidationError(
            {
                "channel": f"Unknown channel {channel!r}. Allowed values: {', '.join(Channel.values)}."
            }
        )
    now = timezone.now()
    ticket = Ticket.objects.create(
        subject=_clean_subject(subject),
        description=_clean_body(description, field_name="description"),
        category=_check_category(category),
        priority=_check_priority(priority),
        requester=requester,
        assignee=assignee,
        channel=channel,
        tags=clean_tags(tags),
        status=Status.NEW,
        created_at=now,
        updated_at=now,
    )
    # ticket_number (a column default) and the generated columns come back with the INSERT.
    _event(ticket, EventKind.CREATED, actor=actor, to_value=Status.NEW, at=now)
    record(
        "ticket.created",
        target=ticket,
        data={
            "ticket_number": ticket.ticket_number,
            "channel": channel,
            "requester_id": requester.pk,
            "category": category.slug,
            "priority": ticket.priority,
        },
        actor=actor,
    )
    if assignee is not None:
        event = _event(
            ticket, EventKind.ASSIGNEE, actor=actor, to_value=user_label(assignee), at=now
        )
        record(
            "ticket.assigned",
            target=ticket,
            changes={"assignee": [None, assignee.get_username()]},
            actor=actor,
        )
        if assignee.pk != actor.pk:
            _on_commit(tasks.send_assignment_email, ticket.pk, assignee.pk, event.pk)
    return ticket


@transaction.atomic
def update_ticket(
    *,
    actor,
    ticket: Ticket,
    subject: str | None = None,
    priority: str | None = None,
    category: Category | None = None,
    tags: Sequence[str] | None = None,
) -> Ticket:
    """Change any of subject, priority, category and tags (None leaves a field as it is)."""
    _require_staff(actor, "update tickets")
    ticket = _lock(ticket.pk)
    now = timezone.now()
    changes: dict[str, list] = {}
    if subject is not None:
        subject = _clean_subject(subject)
        if subject != ticket.subject:
            _event(
                ticket,
                EventKind.SUBJECT,
                actor=actor,
                from_value=ticket.subject,
                to_value=subject,
                at=now,
            )
            changes["subject"] = [ticket.subject, subject]
            ticket.subject = subject
    if priority is not None and _check_priority(priority) != ticket.priority:
        _event(
            ticket,
            EventKind.PRIORITY,
            actor=actor,
            from_value=ticket.priority,
            to_value=priority,
            at=now,
        )
        changes["priority"] = [ticket.priority, priority]
        ticket.priority = priority
    if category is not None and category.pk != ticket.category_id:
        _check_category(category)
        _event(
            ticket,
            EventKind.CATEGORY,
            actor=actor,
            from_value=ticket.category.name,
            to_value=category.name,
            at=now,
        )
        changes["category"] = [ticket.category.slug, category.slug]
        ticket.category = category
    if tags is not None:
        cleaned = clean_tags(tags)
        if cleaned != list(ticket.tags):
            _event(
                ticket,
                EventKind.TAGS,
                actor=actor,
                from_value=", ".join(ticket.tags),
                to_value=", ".join(cleaned),
                at=now,
            )
            changes["tags"] = [list(ticket.tags), cleaned]
            ticket.tags = cleaned
    if not changes:
        return ticket
    ticket.updated_at = now
    ticket.save(update_fields=[*changes, "updated_at"])
    if "priority" in changes:
        ticket.refresh_from_db(fields=["priority_rank"])
    record("ticket.updated", target=ticket, changes=changes, actor=actor)
    return ticket


@transaction.atomic
def assign_ticket(*, actor, ticket: Ticket, assignee) -> Ticket:
    """Assign to a staff member who works tickets, or unassign with ``assignee=None``. The
    new assignee is emailed unless they assigned themselves."""
    _require_staff(actor, "assign tickets")
    _check_assignee(assignee)
    ticket = _lock(ticket.pk)
    return _assign(actor=actor, ticket=ticket, assignee=assignee, now=timezone.now())


def _assign(*, actor, ticket: Ticket, assignee, now) -> Ticket:
    new_id = assignee.pk if assignee is not None else None
    if new_id == ticket.assignee_id:
        return ticket
    previous = ticket.assignee
    event = _event(
        ticket,
        EventKind.ASSIGNEE,
        actor=actor,
        from_value=user_label(previous),
        to_value=user_label(assignee),
        at=now,
    )
    ticket.assignee = assignee
    ticket.updated_at = now
    ticket.save(update_fields=["assignee", "updated_at"])
    record(
        "ticket.assigned" if assignee is not None else "ticket.unassigned",
        target=ticket,
        changes={
            "assignee": [
                previous.get_username() if previous else None,
                assignee.get_username() if assignee else None,
            ]
        },
        actor=actor,
    )
    if assignee is not None and assignee.pk != actor.pk:
        _on_commit(tasks.send_assignment_email, ticket.pk, assignee.pk, event.pk)
    return ticket


# --- status --------------------------------------------------------------------------------


@transaction.atomic
def change_status(*, actor, ticket: Ticket, status: str) -> Ticket:
    """Move the ticket to ``status`` if the transition table allows it (TRANSITIONS)."""
    _require_staff(actor, "change a ticket's status")
    ticket = _lock(ticket.pk)
    return _change_status(actor=actor, ticket=ticket, status=status, now=timezone.now())


def _check_transition(*, actor, ticket: Ticket, status: str) -> None:
    if status not in Status.values:
        raise ValidationError(
            {"status": f"Unknown status {status!r}. Allowed values: {', '.join(Status.values)}."}
        )
    if status == ticket.status:
        return
    if status not in TRANSITIONS[ticket.status]:
        allowed = ", ".join(allowed_transitions(ticket.status))
        raise ValidationError(
            {
                "status": f"Ticket #{ticket.ticket_number} cannot go from {ticket.status} to {status}. Allowed next statuses: {allowed}."
            }
        )
    if ticket.status == Status.CLOSED:
        if ticket.merged_into_id is not None:
            raise ValidationError(
                {
                    "status": f"Ticket #{ticket.ticket_number} was merged into another ticket; work on that one instead."
                }
            )
        if not actor.has_perm(REOPEN_CLOSED_PERMISSION):
            raise PermissionDenied(
                f"Only a support lead can reopen closed ticket #{ticket.ticket_number}."
            )


def _change_status(*, actor, ticket: Ticket, status: str, now, reason: str = "") -> Ticket:
    _check_transition(actor=actor, ticket=ticket, status=status)
    if status == ticket.status:
        return ticket
    previous = ticket.status
    fields = ["status", "updated_at"]
    if status == Status.RESOLVED:
        ticket.resolved_at = now
        fields.append("resolved_at")
    elif status == Status.CLOSED:
        ticket.closed_at = now
        fields.append("closed_at")
    elif previous in (Status.RESOLVED, Status.CLOSED):
        # Reopened: the ticket is unfinished again.
        ticket.resolved_at = None
        ticket.closed_at = None
        fields += ["resolved_at", "closed_at"]
    ticket.status = status
    ticket.updated_at = now
    ticket.save(update_fields=fields)
    event = _event(
        ticket, EventKind.STATUS, actor=actor, from_value=previous, to_value=status, at=now
    )
    if status == Status.RESOLVED:
        name = "ticket.resolved"
    elif status == Status.CLOSED:
        name = "ticket.closed"
    elif previous in (Status.RESOLVED, Status.CLOSED):
        name = "ticket.reopened"
    else:
        name = "ticket.status_changed"
    record(
        name,
        target=ticket,
        changes={"status": [previous, status]},
        data={"reason": reason} if reason else None,
        actor=actor,
    )
    if status == Status.RESOLVED:
        _on_commit(tasks.send_resolved_email, ticket.pk, event.pk)
    return ticket


@transaction.atomic
def resolve(*, actor, ticket: Ticket) -> Ticket:
    return change_status(actor=actor, ticket=ticket, status=Status.RESOLVED)


@transaction.atomic
def close(*, actor, ticket: Ticket) -> Ticket:
    return change_status(actor=actor, ticket=ticket, status=Status.CLOSED)


@transaction.atomic
def reopen(*, actor, ticket: Ticket) -> Ticket:
    """Resolved or closed → open. Closed tickets reopen only for a lead."""
    _require_staff(actor, "reopen tickets")
    ticket = _lock(ticket.pk)
    if ticket.status not in (Status.RESOLVED, Status.CLOSED):
        raise ValidationError(
            {
                "status": f"Ticket #{ticket.ticket_number} is {ticket.status}, not resolved or closed."
            }
        )
    return _change_status(actor=actor, ticket=ticket, status=Status.OPEN, now=timezone.now())


# --- comments ------------------------------------------------------------------------------


@transaction.atomic
def add_comment(
    *, actor, ticket: Ticket, body: str, is_internal: bool = False, parent: Comment | None = None
) -> Comment:
    """Add a public comment or (staff only) an internal note.

    The first public staff reply records the first response and opens a new ticket; a
    customer's reply to a pending or resolved ticket reopens it. Closed tickets accept no
    comments. Public staff replies are emailed to the requester; internal notes never are."""
    _require_requester_or_staff(actor, ticket)
    if is_internal and not actor.is_staff:
        raise ValidationError({"is_internal": "Only staff can add internal notes."})
    body = _clean_body(body, field_name="comment")
    ticket = _lock(ticket.pk)
    if ticket.status == Status.CLOSED:
        raise ValidationError(
            {
                "comment": f"Ticket #{ticket.ticket_number} is closed and accepts no comments; a lead can reopen it."
            }
        )
    if parent is not None and (
        parent.ticket_id != ticket.pk or (parent.is_internal and not actor.is_staff)
    ):
        raise ValidationError({"parent_id": "No such comment on this ticket."})

    now = timezone.now()
    comment = Comment.objects.create(
        ticket=ticket,
        author=actor,
        body=body,
        is_internal=is_internal,
        parent=parent,
        created_at=now,
    )
    fields = ["updated_at"]
    ticket.updated_at = now
    staff_reply = actor.is_staff and not is_internal
    if staff_reply and ticket.first_responded_at is None:
        ticket.first_responded_at = now
        fields.append("first_responded_at")
    ticket.save(update_fields=fields)
    record(
        "ticket.comment_added",
        target=ticket,
        data={
            "comment_id": comment.pk,
            "is_internal": is_internal,
            "parent_id": getattr(parent, "pk", None),
        },
        actor=actor,
    )
    if staff_reply and ticket.status == Status.NEW:
        _change_status(
            actor=actor, ticket=ticket, status=Status.OPEN, now=now, reason="first staff reply"
        )
    elif not actor.is_staff and ticket.status in (Status.PENDING, Status.RESOLVED):
        _change_status(
            actor=actor, ticket=ticket, status=Status.OPEN, now=now, reason="customer replied"
        )
    if staff_reply:
        _on_commit(tasks.send_reply_email, comment.pk)
    return comment


# --- merge ---------------------------------------------------------------------------------


@transaction.atomic
def merge_tickets(*, actor, source: Ticket, target: Ticket) -> Ticket:
    """Merge the duplicate ``source`` into ``target``: its comments (and its description, as
    the requester's comment) move to the target, its tags join the target's, and it closes
    with a link to the target. Both must belong to the same customer, so a merge never
    shows one customer's words to another."""
    _require_staff(actor, "merge tickets")
    if source.pk == target.pk:
        raise ValidationError({"target": "A ticket cannot be merged into itself."})
    first, second = sorted((source.pk, target.pk))
    locked = {first: _lock(first), second: _lock(second)}  # fixed order: no deadlock
    source, target = locked[source.pk], locked[target.pk]
    if source.merged_into_id is not None:
        raise ValidationError({"source": f"Ticket #{source.ticket_number} was already merged."})
    if source.status == Status.CLOSED:
        raise ValidationError({"source": f"Ticket #{source.ticket_number} is closed."})
    if target.merged_into_id is not None or target.status == Status.CLOSED:
        raise ValidationError(
            {"target": f"Ticket #{target.ticket_number} is closed; reopen it or pick another."}
        )
    if source.requester_id != target.requester_id:
        raise ValidationError({"target": "Only tickets from the same customer can be merged."})

    now = timezone.now()
    moved = Comment.objects.filter(ticket=source).update(
        ticket=target,
        # Comments merged in earlier keep pointing at the ticket they were written on.
        merged_from=Coalesce(
            F("merged_from"), Value(source.pk), output_field=models.BigIntegerField()
        ),
    )
    Comment.objects.create(
        ticket=target,
        author=source.requester,
        body=source.description,
        is_internal=False,
        merged_from=source,
        created_at=source.created_at,
    )
    tags = clean_tags([*target.tags, *source.tags]) if source.tags else list(target.tags)
    target_fields = ["updated_at"]
    if tags != list(target.tags):
        target.tags = tags
        target_fields.append("tags")
    if target.first_responded_at is None and source.first_responded_at is not None:
        target.first_responded_at = source.first_responded_at
        target_fields.append("first_responded_at")
    target.updated_at = now
    target.save(update_fields=target_fields)

    previous_status = source.status
    source.status = Status.CLOSED
    source.closed_at = now
    source.merged_into = target
    source.updated_at = now
    source.save(update_fields=["status", "closed_at", "merged_into", "updated_at"])

    _event(
        source,
        EventKind.STATUS,
        actor=actor,
        from_value=previous_status,
        to_value=Status.CLOSED,
        at=now,
    )
    _event(source, EventKind.MERGED_INTO, actor=actor, to_value=f"#{target.ticket_number}", at=now)
    _event(
        target, EventKind.MERGED_FROM, actor=actor, from_value=f"#{source.ticket_number}", at=now
    )
    record(
        "ticket.merged",
        target=source,
        changes={"status": [previous_status, Status.CLOSED], "merged_into": [None, target.pk]},
        data={
            "into_ticket_id": target.pk,
            "into_ticket_number": target.ticket_number,
            "comments_moved": moved,
        },
        actor=actor,
    )
    return target


# --- bulk ----------------------------------------------------------------------------------


@dataclass
class BulkResult:
    changed: list[Ticket] = field(default_factory=list)
    unchanged: list[Ticket] = field(default_factory=list)


def _lock_many(ticket_ids: Sequence[int]) -> list[Ticket]:
    ids = sorted({int(pk) for pk in ticket_ids})
    if not ids:
        raise ValidationError({"tickets": "Select at least one ticket."})
    if len(ids) > BULK_LIMIT:
        raise ValidationError(
            {"tickets": f"At most {BULK_LIMIT} tickets at once (got {len(ids)})."}
        )
    tickets = list(
        Ticket.objects.select_for_update(of=("self",))
        .select_related("category", "requester", "assignee")
        .filter(pk__in=ids)
        .order_by("pk")  # fixed lock order: concurrent bulk changes cannot deadlock
    )
    missing = sorted(set(ids) - {t.pk for t in tickets})
    if missing:
        raise ValidationError({"tickets": f"No tickets with ids {', '.join(map(str, missing))}."})
    return tickets


@transaction.atomic
def bulk_assign(*, actor, ticket_ids: Sequence[int], assignee) -> BulkResult:
    _require_staff(actor, "assign tickets")
    _check_assignee(assignee)
    result = BulkResult()
    now = timezone.now()
    for ticket in _lock_many(ticket_ids):
        same = ticket.assignee_id == (assignee.pk if assignee else None)
        _assign(actor=actor, ticket=ticket, assignee=assignee, now=now)
        (result.unchanged if same else result.changed).append(ticket)
    return result


@transaction.atomic
def bulk_change_status(*, actor, ticket_ids: Sequence[int], status: str) -> BulkResult:
    """All or nothing: if any selected ticket may not move to ``status``, none moves and the
    error names them. Tickets already in ``status`` are left as they are."""
    _require_staff(actor, "change a ticket's status")
    tickets = _lock_many(ticket_ids)
    refused: list[str] = []
    for ticket in tickets:
        try:
            _check_transition(actor=actor, ticket=ticket, status=status)
        except ValidationError as error:
            if status not in Status.values:
                raise
            refused.append(
                f"#{ticket.ticket_number} ({ticket.status}): {error.message_dict['status'][0]}"
            )
        except PermissionDenied as error:
            refused.append(f"#{ticket.ticket_number}: {error}")
    if refused:
        raise ValidationError(
            {
                "status": f"Nothing was changed. {len(refused)} ticket(s) cannot move to {status}: "
                + " ".join(refused)
            }
        )
    result = BulkResult()
    now = timezone.now()
    for ticket in tickets:
        if ticket.status == status:
            result.unchanged.append(ticket)
        else:
            _change_status(actor=actor, ticket=ticket, status=status, now=now)
            result.changed.append(ticket)
    return result


@transaction.atomic
def bulk_close(*, actor, ticket_ids: Sequence[int]) -> BulkResult:
    return bulk_change_status(actor=actor, ticket_ids=ticket_ids, status=Status.CLOSED)


# --- customer context, canned replies, saved views -----------------------------------------


@transaction.atomic
def record_customer_context_viewed(*, actor, ticket: Ticket) -> None:
    """Showing the customer panel reveals personal data: record the access."""
    # The same entry as audit.services.record_access, with the explicit actor.
    record(
        "customer.viewed",
        target=ticket.requester,
        data={
            "what": "ticket_customer_context",
            "ticket_id": ticket.pk,
            "ticket_number": ticket.ticket_number,
        },
        actor=actor,
    )


@transaction.atomic
def create_canned_reply(*, actor, title: str, body: str) -> CannedReply:
    _require_staff(actor, "manage canned replies")
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError({"title": "A title is required."})
    if CannedReply.objects.filter(title__iexact=title).exists():
        raise ValidationError({"title": f"A canned reply titled {title!r} already exists."})
    reply = CannedReply.objects.create(
        title=title[:100], body=_clean_body(body, field_name="body"), created_by=actor
    )
    record("canned_reply.created", target=reply, actor=actor)
    return reply


@transaction.atomic
def update_canned_reply(
    *, actor, reply: CannedReply, title: str | None = None, body: str | None = None
) -> CannedReply:
    _require_staff(actor, "manage canned replies")
    reply = CannedReply.objects.select_for_update().get(pk=reply.pk)
    changes: dict[str, list] = {}
    if title is not None:
        title = " ".join(title.split())[:100]
        if not title:
            raise ValidationError({"title": "A title is required."})
        if CannedReply.objects.filter(title__iexact=title).exclude(pk=reply.pk).exists():
            raise ValidationError({"title": f"A canned reply titled {title!r} already exists."})
        if title != reply.title:
            changes["title"] = [reply.title, title]
            reply.title = title
    if body is not None:
        body = _clean_body(body, field_name="body")
        if body != reply.body:
            changes["body"] = [reply.body, body]
            reply.body = body
    if changes:
        reply.updated_at = timezone.now()
        reply.save(update_fields=[*changes, "updated_at"])
        record("canned_reply.updated", target=reply, changes=changes, actor=actor)
    return reply


@transaction.atomic
def delete_canned_reply(*, actor, reply: CannedReply) -> None:
    _require_staff(actor, "manage canned replies")
    record("canned_reply.deleted", target=reply, data={"title": reply.title}, actor=actor)
    reply.delete()


@transaction.atomic
def save_view(*, actor, name: str, query_string: str) -> SavedView:
    """Save (or overwrite) one of the actor's named queue views."""
    name = " ".join((name or "").split())
    if not name:
        raise ValidationError({"name": "A name is required."})
    if len(name) > 60:
        raise ValidationError({"name": "At most 60 characters."})
    if len(query_string) > 1000:
        raise ValidationError({"query_string": "At most 1000 characters."})
    view, created = SavedView.objects.update_or_create(
        user=actor, name=name, defaults={"query_string": query_string.lstrip("?")}
    )
    record("ticket_view.saved", target=view, data={"name": name, "created": created}, actor=actor)
    return view


@transaction.atomic
def delete_saved_view(*, actor, view: SavedView) -> None:
    if view.user_id != actor.pk:
        raise PermissionDenied("You can only delete your own views.")
    record("ticket_view.deleted", target=view, data={"name": view.name}, actor=actor)
    view.delete()


@transaction.atomic
def create_category(
    *, actor, slug: str, name: str, description: str = "", position: int = 100
) -> Category:
    _require_staff(actor, "manage categories")
    try:
        validate_slug(slug)
    except ValidationError:
        raise ValidationError({"slug": "Use letters, digits, '-' and '_' only."}) from None
    if Category.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": f"A category with slug {slug!r} already exists."})
    category = Category.objects.create(
        slug=slug, name=name, description=description, position=position
    )
    record("ticket_category.created", target=category, actor=actor)
    return category


# --- maintenance ---------------------------------------------------------------------------


def compact_ticket_counts() -> int:
    """Fold the facet counters' delta rows (TicketCount) into one row per combination;
    returns how many combinations were folded. Bookkeeping only: the counts do not change,
    so there is nothing to audit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tickets_compact_counts()")
        return cursor.fetchone()[0]


def rebuild_ticket_counts() -> None:
    """Recount the facet counters from the tickets (after a bulk load with triggers off)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE tickets_ticket IN SHARE MODE")  # no changes while counting
        cursor.execute("SELECT tickets_rebuild_counts()")


# --- notifications (called by tasks) -------------------------------------------------------


def _send_once(*, key: str, kind: str, ticket: Ticket, message: EmailMessage) -> bool:
    """Send ``message`` unless an email with ``key`` was already sent. The key row and the
    send share a transaction: a failed send leaves no row, so a retry sends again."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                EmailNotification.objects.create(
                    key=key, kind=kind, ticket=ticket, recipient=message.to[0]
                )
        except IntegrityError:
            return False
        message.send(fail_silently=False)
    return True


def send_reply_email(*, comment_id: int) -> bool:
    """Mail a public staff reply to the requester. Re-checked at send time: a comment that
    is now internal, gone, or not from staff is not mailed."""
    comment = (
        Comment.objects.select_related("ticket", "ticket__requester", "author")
        .defer("ticket__search_vector")
        .filter(pk=comment_id)
        .first()
    )
    if comment is None or comment.is_internal or not comment.author.is_staff:
        return False
    requester = comment.ticket.requester
    if not requester.email:
        return False
    message = emails.reply_email(comment=comment, ticket=comment.ticket, recipient=requester)
    return _send_once(
        key=f"reply:{comment.pk}", kind="reply", ticket=comment.ticket, message=message
    )


def send_resolved_email(*, ticket_id: int, event_id: int) -> bool:
    """Tell the requester their ticket was resolved — unless it was reopened meanwhile."""
    ticket = Ticket.objects.select_related("requester").filter(pk=ticket_id).first()
    if ticket is None or ticket.status != Status.RESOLVED or not ticket.requester.email:
        return False
    message = emails.resolved_email(ticket=ticket, recipient=ticket.requester)
    return _send_once(key=f"resolved:{event_id}", kind="resolved", ticket=ticket, message=message)


def send_assignment_email(*, ticket_id: int, assignee_id: int, event_id: int) -> bool:
    """Tell an agent a ticket is theirs — unless it has been reassigned meanwhile."""
    ticket = (
        Ticket.objects.select_related("assignee", "category", "requester")
        .filter(pk=ticket_id)
        .first()
    )
    if ticket is None or ticket.assignee_id != assignee_id or not ticket.assignee.email:
        return False
    if ticket.status not in ACTIVE_STATUSES:
        return False
    message = emails.assignment_email(ticket=ticket, recipient=ticket.assignee)
    return _send_once(key=f"assigned:{event_id}", kind="assigned", ticket=ticket, message=message)
