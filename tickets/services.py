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
import time
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

from adminsite.prepared import Statement
from adminsite.users import user_label
from audit.services import record
from tickets import assignment, emails, sla, tasks
from tickets.models import (
    ACTIVE_STATUSES,
    BODY_MAX_LENGTH,
    MAX_TAGS,
    SUBJECT_MAX_LENGTH,
    TAG_MAX_LENGTH,
    AgentProfile,
    AlertKind,
    AssignmentStrategy,
    BusinessCalendar,
    CalendarHoliday,
    CannedReply,
    Category,
    Channel,
    Comment,
    CustomerProfile,
    CustomerTier,
    EmailNotification,
    EventKind,
    Priority,
    SavedView,
    SLAAlert,
    SLAPolicy,
    SLATarget,
    Status,
    SupportNotification,
    SupportTeam,
    TargetOutcome,
    Ticket,
    TicketEvent,
)

REOPEN_CLOSED_PERMISSION = "tickets.reopen_closed_ticket"
# The actor of what the system does by itself (routing, the SLA scan) in the audit trail.
SYSTEM = "system"
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
        .select_related("category", "requester", "assignee", "sla_policy__calendar")
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


# The router's two writes in one statement, as it runs for every routed ticket: the timeline
# entry (no actor: the system) and the ticket row. The change is in the audit trail as the
# ticket.assigned event; the model's field diff would say the same again at the cost of
# rereading the ticket, so the row is written without one.
_ROUTED_ASSIGNMENT = Statement(
    "tickets_routed_assignment",
    """
    WITH event AS (
        INSERT INTO tickets_ticketevent (ticket_id, kind, from_value, to_value, actor_id, created_at)
        VALUES (%(ticket)s, %(kind)s, %(from_value)s, %(to_value)s, NULL, %(at)s)
        RETURNING id
    ), ticket AS (
        UPDATE tickets_ticket
           SET assignee_id = %(assignee)s, updated_at = %(at)s, auto_assigned = %(auto_assigned)s,
               needs_assignment = %(needs_assignment)s
         WHERE id = %(ticket)s
    )
    SELECT id FROM event
""",
    [
        ("ticket", "bigint"),
        ("kind", "text"),
        ("from_value", "text"),
        ("to_value", "text"),
        ("at", "timestamptz"),
        ("assignee", "bigint"),
        ("auto_assigned", "boolean"),
        ("needs_assignment", "boolean"),
    ],
)


def _write_routed_assignment(ticket: Ticket, *, from_label: str, to_label: str) -> int:
    values = {
        "ticket": ticket.pk,
        "kind": EventKind.ASSIGNEE.value,
        "from_value": from_label[:300],
        "to_value": to_label[:300],
        "at": ticket.updated_at,
        "assignee": ticket.assignee_id,
        "auto_assigned": ticket.auto_assigned,
        "needs_assignment": ticket.needs_assignment,
    }
    return _ROUTED_ASSIGNMENT.execute(values).fetchone()[0]


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
    # Due times are known before the INSERT, so the row is written once.
    plan = sla.plan_new_ticket(
        priority=_check_priority(priority),
        category_id=_check_category(category).pk,
        requester_id=requester.pk,
        created_at=now,
    )
    ticket = Ticket.objects.create(
        subject=_clean_subject(subject),
        description=_clean_body(description, field_name="description"),
        category=category,
        priority=priority,
        requester=requester,
        assignee=assignee,
        channel=channel,
        tags=clean_tags(tags),
        status=Status.NEW,
        created_at=now,
        updated_at=now,
        **plan.ticket_fields(),
    )
    # ticket_number (a column default) and the generated columns come back with the INSERT.
    sla.start_new_ticket(ticket, plan)
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
    else:
        _route(ticket, now=now)
    return ticket


def _route(ticket: Ticket, *, now, exclude_user_id: int | None = None) -> bool:
    """Automatic assignment (tickets.assignment) of an unassigned or re-routed ticket; a
    category that routes but finds nobody eligible leaves it unassigned and flagged.
    Returns whether an agent was found."""
    if not assignment.routes(ticket.category):
        return False
    agent = assignment.pick_agent(
        category=ticket.category, now=now, exclude_user_id=exclude_user_id
    )
    if agent is not None:
        _assign(actor=SYSTEM, ticket=ticket, assignee=agent, now=now, auto=True)
        return True
    if ticket.assignee_id is not None:
        _assign(actor=SYSTEM, ticket=ticket, assignee=None, now=now, auto=True)
    if not ticket.needs_assignment:
        ticket.needs_assignment = True
        ticket.save(update_fields=["needs_assignment"])
        record(
            "ticket.assignment_flagged",
            target=ticket,
            data={"category": ticket.category.slug, "reason": "no available agent below the cap"},
            actor=SYSTEM,
        )
    return False


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
    fields = [*changes, "updated_at"]
    if "priority" in changes or "category" in changes:
        fields += sla.on_retarget(ticket, now=now)
    ticket.save(update_fields=list(dict.fromkeys(fields)))
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


def _assign(*, actor, ticket: Ticket, assignee, now, auto: bool = False) -> Ticket:
    """Set the assignee. ``auto``: chosen by the router; a manual assignment (the default)
    clears that mark, so the router never moves a ticket a person assigned."""
    new_id = assignee.pk if assignee is not None else None
    if new_id == ticket.assignee_id:
        if not auto and (ticket.auto_assigned or ticket.needs_assignment):
            ticket.auto_assigned = ticket.needs_assignment = False
            ticket.save(update_fields=["auto_assigned", "needs_assignment"])
        return ticket
    previous = ticket.assignee
    from_label, to_label = user_label(previous), user_label(assignee)
    ticket.assignee = assignee
    ticket.updated_at = now
    ticket.auto_assigned = auto and assignee is not None
    if assignee is not None or not auto:
        ticket.needs_assignment = False
    if auto:
        event_id = _write_routed_assignment(ticket, from_label=from_label, to_label=to_label)
    else:
        event_id = _event(
            ticket,
            EventKind.ASSIGNEE,
            actor=actor,
            from_value=from_label,
            to_value=to_label,
            at=now,
        ).pk
        ticket.save(update_fields=["assignee", "updated_at", "auto_assigned", "needs_assignment"])
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
    if assignee is not None and assignee.pk != getattr(actor, "pk", None):
        _on_commit(tasks.send_assignment_email, ticket.pk, assignee.pk, event_id)
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
    fields += sla.on_status_change(ticket, previous=previous, status=status, now=now)
    ticket.save(update_fields=list(dict.fromkeys(fields)))
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
        fields += sla.on_first_response(ticket, now=now)
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


def merge_refusal(source: Ticket, target: Ticket | None = None) -> dict[str, str]:
    """Why ``source`` cannot be merged (into ``target``, when given), as ``{"source": …}`` or
    ``{"target": …}``; empty when it can. merge_tickets checks it with both rows locked; the
    merge page says it in its preview, so the confirm button is offered only for a merge that
    can happen."""
    if source.merged_into is not None:
        return {
            "source": f"#{source.ticket_number} was already merged into "
            f"#{source.merged_into.ticket_number}; it cannot be merged again."
        }
    if source.status == Status.CLOSED:
        return {"source": f"#{source.ticket_number} is closed: only open tickets can be merged."}
    if target is None:
        return {}
    number = f"#{target.ticket_number}"
    if target.pk == source.pk:
        return {"target": f"{number} is this ticket: a ticket cannot be merged into itself."}
    if target.merged_into is not None:
        return {
            "target": f"{number} was itself merged into #{target.merged_into.ticket_number}; "
            "merge into that one instead."
        }
    if target.status == Status.CLOSED:
        return {"target": f"{number} is closed; reopen it or pick another."}
    if target.requester_id != source.requester_id:
        return {
            "target": f"{number} was opened by {user_label(target.requester)}, not "
            f"{user_label(source.requester)}: only tickets from the same customer can be "
            "merged, so one customer never sees another's words."
        }
    return {}


@transaction.atomic
def merge_tickets(*, actor, source: Ticket, target: Ticket) -> Ticket:
    """Merge the duplicate ``source`` into ``target``: its comments (and its description, as
    the requester's comment) move to the target, its tags join the target's, and it closes
    with a link to the target. Both must belong to the same customer, so a merge never
    shows one customer's words to another (merge_refusal says what else is refused)."""
    _require_staff(actor, "merge tickets")
    if source.pk == target.pk:
        raise ValidationError(merge_refusal(source, target))
    first, second = sorted((source.pk, target.pk))
    locked = {first: _lock(first), second: _lock(second)}  # fixed order: no deadlock
    source, target = locked[source.pk], locked[target.pk]
    refusal = merge_refusal(source, target)
    if refusal:
        raise ValidationError(refusal)

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
        # The duplicate's answer answered the customer: the target's first response is met
        # (or missed) as of that moment.
        target_fields += sla.on_first_response(target, now=source.first_responded_at)
    target.updated_at = now
    target.save(update_fields=target_fields)

    previous_status = source.status
    source.status = Status.CLOSED
    source.closed_at = now
    source.merged_into = target
    source.updated_at = now
    source.save(
        update_fields=[
            "status",
            "closed_at",
            "merged_into",
            "updated_at",
            *sla.on_merged(source, now=now),
        ]
    )

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
    if ticket is None or ticket.assignee_id != assignee_id:
        return False
    if ticket.assignee is None or not ticket.assignee.email:
        return False
    if ticket.status not in ACTIVE_STATUSES:
        return False
    message = emails.assignment_email(ticket=ticket, recipient=ticket.assignee)
    return _send_once(key=f"assigned:{event_id}", kind="assigned", ticket=ticket, message=message)


# --- SLA: the scan and its notifications ---------------------------------------------------

# Alerts announced per transaction by the sending task (each writes an audit entry).
ALERT_BATCH = 200
# Emails per task: a retried task resends only the ones not yet sent (EmailNotification keys).
EMAILS_PER_TASK = 50


def _leads() -> list:
    from django.contrib.auth import get_user_model

    from adminsite.roles import SUPPORT_LEAD

    return list(
        get_user_model()
        .objects.filter(groups__name=SUPPORT_LEAD, is_active=True, is_staff=True)
        .only("id", "username", "email", "first_name", "last_name")
        .order_by("pk")
    )


def _alert_message(alert: SLAAlert, target: SLATarget, ticket: Ticket) -> str:
    what = target.get_kind_display().lower()
    due = timezone.localtime(target.due_at).strftime("%-d %b %H:%M %Z")
    if alert.kind == AlertKind.BREACH:
        text = f"SLA breached: {what} of #{ticket.ticket_number} was due {due}"
    else:
        text = f"SLA warning: {what} of #{ticket.ticket_number} is due {due}"
    return f"{text} — {ticket.subject}"[:300]


def run_sla_scan(*, now=None) -> dict[str, int]:
    """The per-minute SLA scan: mark the tickets that reached a warning or a deadline
    (set-based, tickets.sla.mark) and decide when each new alert may go out, in one
    transaction; then, if any alert is due, queue the task that announces them
    (``send_due_sla_alerts``). Safe to run twice or in parallel: marks are flags and alerts
    are unique per target and kind. Returns the marks' counts and ``due``, the alerts ready."""
    now = now or timezone.now()
    with transaction.atomic():
        counts = sla.mark(now)
        sla.schedule_alerts(now)
        counts["due"] = SLAAlert.objects.filter(sent_at__isnull=True, notify_after__lte=now).count()
        if counts["due"]:
            _on_commit(tasks.send_sla_alerts, now.isoformat())
    return counts


def send_due_sla_alerts(*, now=None, budget_seconds: float = 40.0) -> int:
    """Announce every alert that is due, ALERT_BATCH per transaction, until none is left or
    the time budget is spent (the next scan queues the rest). Returns how many were handled."""
    now = now or timezone.now()
    started = time.monotonic()
    handled = 0
    while time.monotonic() - started < budget_seconds:
        done = dispatch_sla_alerts(now=now)
        handled += done
        if done < ALERT_BATCH:
            break
    return handled


@transaction.atomic
def dispatch_sla_alerts(*, now=None, limit: int = ALERT_BATCH) -> int:
    """Announce the alerts whose time has come: an in-console notification for the assignee
    (and, for a breach, every support lead), an email to each (after commit), and an audit
    event. An alert whose clock stopped meanwhile (answered, resolved) is closed silently."""
    now = now or timezone.now()
    alerts = list(
        SLAAlert.objects.select_for_update(of=("self",), skip_locked=True)
        .filter(sent_at__isnull=True, notify_after__lte=now)
        .select_related("target", "ticket", "ticket__assignee", "ticket__category")
        .defer("ticket__search_vector", "ticket__description")
        .order_by("notify_after", "id")[:limit]
    )
    if not alerts:
        return 0
    leads = _leads() if any(a.kind == AlertKind.BREACH for a in alerts) else []
    notifications: list[SupportNotification] = []
    to_mail: list[tuple[int, int]] = []
    for alert in alerts:
        ticket, target = alert.ticket, alert.target
        alert.sent_at = now
        if target.outcome != TargetOutcome.RUNNING or ticket.status not in ACTIVE_STATUSES:
            continue
        recipients = {}
        assignee = ticket.assignee
        if assignee is not None and assignee.is_active:
            recipients[assignee.pk] = assignee
        if alert.kind == AlertKind.BREACH:
            recipients.update((lead.pk, lead) for lead in leads)
        message = _alert_message(alert, target, ticket)
        for user in recipients.values():
            notifications.append(
                SupportNotification(
                    user=user,
                    ticket=ticket,
                    alert=alert,
                    kind=alert.kind,
                    message=message,
                    created_at=now,
                )
            )
            if user.email:
                to_mail.append((alert.pk, user.pk))
        record(
            "ticket.sla_breached" if alert.kind == AlertKind.BREACH else "ticket.sla_warning",
            target=ticket,
            data={
                "target": target.kind,
                "cycle": target.cycle,
                "policy": target.policy_name,
                "due_at": target.due_at.isoformat(),
                "notified": sorted(recipients),
            },
            actor=SYSTEM,
        )
    SLAAlert.objects.filter(pk__in=[a.pk for a in alerts]).update(sent_at=now)
    SupportNotification.objects.bulk_create(notifications, ignore_conflicts=True)
    for start in range(0, len(to_mail), EMAILS_PER_TASK):
        chunk = [list(pair) for pair in to_mail[start : start + EMAILS_PER_TASK]]
        _on_commit(tasks.send_sla_alert_emails, chunk)
    return len(alerts)


def send_sla_alert_email(*, alert_id: int, user_id: int) -> bool:
    """Mail one recipient of an SLA alert, once (the key is the alert and the recipient)."""
    from django.contrib.auth import get_user_model

    alert = (
        SLAAlert.objects.select_related(
            "target", "ticket", "ticket__assignee", "ticket__category", "ticket__requester"
        )
        .defer("ticket__search_vector")
        .filter(pk=alert_id)
        .first()
    )
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if alert is None or user is None or not user.email:
        return False
    message = emails.sla_alert_email(
        alert=alert, ticket=alert.ticket, target=alert.target, recipient=user
    )
    return _send_once(
        key=f"sla:{alert.pk}:{user.pk}",
        kind=f"sla_{alert.kind}",
        ticket=alert.ticket,
        message=message,
    )


@transaction.atomic
def mark_notifications_read(*, actor, ids: Sequence[int] | None = None) -> int:
    """Mark the actor's notifications read: the given ones, or all."""
    queryset = SupportNotification.objects.filter(user=actor, read_at__isnull=True)
    if ids is not None:
        queryset = queryset.filter(pk__in=list(ids))
    return queryset.update(read_at=timezone.now())


# --- SLA settings: policies, calendars, customer tiers -------------------------------------

POLICY_FIELDS = (
    "name",
    "position",
    "priority",
    "category",
    "customer_tier",
    "first_response_minutes",
    "resolution_minutes",
    "calendar",
    "is_active",
)


def _require(actor, permission: str, what: str) -> None:
    if not actor.has_perm(permission):
        raise PermissionDenied(f"Your role may not {what}.")


def _policy_values(values: dict) -> dict:
    cleaned = {key: values[key] for key in POLICY_FIELDS if key in values}
    name = " ".join(str(cleaned.get("name", "")).split())
    if "name" in cleaned:
        if not name:
            raise ValidationError({"name": "A name is required."})
        cleaned["name"] = name[:100]
    if "priority" in cleaned:
        _check_priority(cleaned["priority"])
    if cleaned.get("customer_tier") and cleaned["customer_tier"] not in CustomerTier.values:
        raise ValidationError(
            {
                "customer_tier": f"Unknown tier {cleaned['customer_tier']!r}. Allowed values: {', '.join(CustomerTier.values)}."
            }
        )
    for key in ("first_response_minutes", "resolution_minutes"):
        if key in cleaned and (not isinstance(cleaned[key], int) or cleaned[key] <= 0):
            raise ValidationError({key: "Give a whole number of minutes, at least 1."})
    first = cleaned.get("first_response_minutes")
    resolution = cleaned.get("resolution_minutes")
    if first and resolution and resolution < first:
        raise ValidationError(
            {
                "resolution_minutes": "The resolution target cannot be shorter than the first response target."
            }
        )
    return cleaned


@transaction.atomic
def create_sla_policy(*, actor, **values) -> SLAPolicy:
    _require(actor, "tickets.add_slapolicy", "manage SLA policies")
    cleaned = _policy_values(values)
    for key in ("name", "priority", "first_response_minutes", "resolution_minutes"):
        if key not in cleaned:
            raise ValidationError({key: "This field is required."})
    policy = SLAPolicy.objects.create(**cleaned)
    record("sla_policy.created", target=policy, data=_policy_data(policy), actor=actor)
    return policy


def _policy_data(policy: SLAPolicy) -> dict:
    return {
        "name": policy.name,
        "priority": policy.priority,
        "category": policy.category.slug if policy.category is not None else None,
        "customer_tier": policy.customer_tier or None,
        "first_response_minutes": policy.first_response_minutes,
        "resolution_minutes": policy.resolution_minutes,
        "calendar": policy.calendar.name if policy.calendar is not None else None,
        "position": policy.position,
        "is_active": policy.is_active,
    }


@transaction.atomic
def update_sla_policy(*, actor, policy: SLAPolicy, **values) -> SLAPolicy:
    """Change a policy. Tickets keep the due times they have; the new targets apply to
    tickets opened, re-prioritised or reopened from now on."""
    _require(actor, "tickets.change_slapolicy", "manage SLA policies")
    policy = SLAPolicy.objects.select_for_update().get(pk=policy.pk)
    before = _policy_data(policy)
    cleaned = _policy_values(values)
    merged_first = cleaned.get("first_response_minutes", policy.first_response_minutes)
    merged_resolution = cleaned.get("resolution_minutes", policy.resolution_minutes)
    if merged_resolution < merged_first:
        raise ValidationError(
            {
                "resolution_minutes": "The resolution target cannot be shorter than the first response target."
            }
        )
    for key, value in cleaned.items():
        setattr(policy, key, value)
    policy.updated_at = timezone.now()
    policy.save()
    after = _policy_data(policy)
    changes = {k: [before[k], after[k]] for k in after if before[k] != after[k]}
    if changes:
        record("sla_policy.updated", target=policy, changes=changes, actor=actor)
    return policy


@transaction.atomic
def delete_sla_policy(*, actor, policy: SLAPolicy) -> None:
    """Remove a policy. Tickets under it keep their due times and history (the history
    keeps the policy's name)."""
    _require(actor, "tickets.delete_slapolicy", "delete SLA policies")
    record("sla_policy.deleted", target=policy, data=_policy_data(policy), actor=actor)
    policy.delete()


def _calendar_values(values: dict, *, partial: bool) -> dict:
    cleaned: dict = {}
    if "name" in values or not partial:
        name = " ".join(str(values.get("name", "")).split())
        if not name:
            raise ValidationError({"name": "A name is required."})
        cleaned["name"] = name[:100]
    if "time_zone" in values or not partial:
        cleaned["time_zone"] = sla.check_time_zone(values.get("time_zone", ""))
    if "always_open" in values:
        cleaned["always_open"] = bool(values["always_open"])
    if "weekly_hours" in values or not partial:
        cleaned["weekly_hours"] = sla.check_weekly_hours(values.get("weekly_hours", [[]] * 7))
    if "holiday_country" in values or "holiday_subdivision" in values:
        country, subdivision = sla.check_country(
            values.get("holiday_country", ""), values.get("holiday_subdivision", "")
        )
        cleaned["holiday_country"], cleaned["holiday_subdivision"] = country, subdivision
    return cleaned


def _check_open_sometime(calendar: BusinessCalendar) -> None:
    if not calendar.always_open and not any(calendar.weekly_hours):
        raise ValidationError(
            {
                "weekly_hours": "Give business hours on at least one weekday, or choose around the clock."
            }
        )


@transaction.atomic
def create_calendar(*, actor, **values) -> BusinessCalendar:
    _require(actor, "tickets.add_businesscalendar", "manage business calendars")
    cleaned = _calendar_values(values, partial=False)
    if BusinessCalendar.objects.filter(name__iexact=cleaned["name"]).exists():
        raise ValidationError({"name": f"A calendar named {cleaned['name']!r} already exists."})
    calendar = BusinessCalendar(**cleaned)
    _check_open_sometime(calendar)
    calendar.save()
    record("business_calendar.created", target=calendar, data=cleaned, actor=actor)
    return calendar


@transaction.atomic
def update_calendar(*, actor, calendar: BusinessCalendar, **values) -> BusinessCalendar:
    """Change a calendar. Running clocks keep their due times until their ticket changes."""
    _require(actor, "tickets.change_businesscalendar", "manage business calendars")
    calendar = BusinessCalendar.objects.select_for_update().get(pk=calendar.pk)
    cleaned = _calendar_values(values, partial=True)
    if (
        "name" in cleaned
        and BusinessCalendar.objects.filter(name__iexact=cleaned["name"])
        .exclude(pk=calendar.pk)
        .exists()
    ):
        raise ValidationError({"name": f"A calendar named {cleaned['name']!r} already exists."})
    changes = {
        key: [getattr(calendar, key), value]
        for key, value in cleaned.items()
        if getattr(calendar, key) != value
    }
    for key, value in cleaned.items():
        setattr(calendar, key, value)
    _check_open_sometime(calendar)
    if changes:
        calendar.updated_at = timezone.now()
        calendar.save()
        record("business_calendar.updated", target=calendar, changes=changes, actor=actor)
    return calendar


@transaction.atomic
def add_calendar_holiday(
    *, actor, calendar: BusinessCalendar, date, name: str = ""
) -> CalendarHoliday:
    _require(actor, "tickets.change_businesscalendar", "manage business calendars")
    calendar = BusinessCalendar.objects.select_for_update().get(pk=calendar.pk)
    if CalendarHoliday.objects.filter(calendar=calendar, date=date).exists():
        raise ValidationError(
            {"date": f"{date.isoformat()} is already a closed day of this calendar."}
        )
    holiday = CalendarHoliday.objects.create(
        calendar=calendar, date=date, name=" ".join((name or "").split())[:100]
    )
    calendar.updated_at = timezone.now()  # a new version: cached schedules are reloaded
    calendar.save(update_fields=["updated_at"])
    record(
        "business_calendar.holiday_added",
        target=calendar,
        data={"date": date.isoformat(), "name": holiday.name},
        actor=actor,
    )
    return holiday


@transaction.atomic
def remove_calendar_holiday(*, actor, holiday: CalendarHoliday) -> None:
    _require(actor, "tickets.change_businesscalendar", "manage business calendars")
    calendar = BusinessCalendar.objects.select_for_update().get(pk=holiday.calendar_id)
    record(
        "business_calendar.holiday_removed",
        target=calendar,
        data={"date": holiday.date.isoformat(), "name": holiday.name},
        actor=actor,
    )
    holiday.delete()
    calendar.updated_at = timezone.now()
    calendar.save(update_fields=["updated_at"])


@transaction.atomic
def set_customer_tier(*, actor, customer, tier: str) -> CustomerProfile:
    """Set a customer's support tier (it narrows SLA policies for their new tickets)."""
    _require(actor, "tickets.change_customerprofile", "change customer tiers")
    if tier not in CustomerTier.values:
        raise ValidationError(
            {"tier": f"Unknown tier {tier!r}. Allowed values: {', '.join(CustomerTier.values)}."}
        )
    if customer.is_staff:
        raise ValidationError({"customer": "Support tiers are for customers, not staff."})
    profile, _created = CustomerProfile.objects.select_for_update().get_or_create(user=customer)
    if profile.tier != tier:
        record(
            "customer.tier_changed",
            target=customer,
            changes={"tier": [profile.tier, tier]},
            actor=actor,
        )
        profile.tier = tier
        profile.updated_at = timezone.now()
        profile.save(update_fields=["tier", "updated_at"])
    return profile


# --- assignment: availability, caps, teams, routing ----------------------------------------


def _profile_for_update(user) -> AgentProfile:
    profile, _created = AgentProfile.objects.get_or_create(user=user)
    return AgentProfile.objects.select_for_update().get(pk=profile.pk)


@transaction.atomic
def set_availability(*, actor, agent, available: bool) -> AgentProfile:
    """An agent marks themself (or a lead marks an agent) available or away. Going away
    re-routes their active tickets that the router gave them; tickets a person assigned
    stay where they are (manual assignment wins)."""
    if actor.pk != agent.pk:
        _require(actor, "tickets.change_agentprofile", "change another agent's availability")
    if not is_assignable(agent):
        raise ValidationError({"agent": f"{agent.get_username()} does not work tickets."})
    profile = _profile_for_update(agent)
    if profile.is_available == available:
        return profile
    now = timezone.now()
    profile.is_available = available
    profile.updated_at = now
    profile.save(update_fields=["is_available", "updated_at"])
    record(
        "agent.availability_changed",
        target=agent,
        changes={"is_available": [not available, available]},
        actor=actor,
    )
    if not available:
        ids = list(
            Ticket.objects.filter(assignee=agent, auto_assigned=True, status__in=ACTIVE_STATUSES)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for ticket_id in ids:
            _route(_lock(ticket_id), now=now, exclude_user_id=agent.pk)
    return profile


@transaction.atomic
def set_agent_cap(*, actor, agent, max_open_tickets: int) -> AgentProfile:
    _require(actor, "tickets.change_agentprofile", "change agents' caps")
    if not isinstance(max_open_tickets, int) or not 0 <= max_open_tickets <= 10_000:
        raise ValidationError({"max_open_tickets": "Give a whole number from 0 to 10000."})
    if not is_assignable(agent):
        raise ValidationError({"agent": f"{agent.get_username()} does not work tickets."})
    profile = _profile_for_update(agent)
    if profile.max_open_tickets != max_open_tickets:
        record(
            "agent.cap_changed",
            target=agent,
            changes={"max_open_tickets": [profile.max_open_tickets, max_open_tickets]},
            actor=actor,
        )
        profile.max_open_tickets = max_open_tickets
        profile.updated_at = timezone.now()
        profile.save(update_fields=["max_open_tickets", "updated_at"])
    return profile


@transaction.atomic
def create_team(*, actor, name: str, members: Iterable = ()) -> SupportTeam:
    _require(actor, "tickets.add_supportteam", "manage support teams")
    name = " ".join((name or "").split())[:100]
    if not name:
        raise ValidationError({"name": "A name is required."})
    if SupportTeam.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": f"A team named {name!r} already exists."})
    team = SupportTeam.objects.create(name=name)
    set_team_members(actor=actor, team=team, members=members)
    record("support_team.created", target=team, data={"name": name}, actor=actor)
    return team


@transaction.atomic
def set_team_members(*, actor, team: SupportTeam, members: Iterable) -> SupportTeam:
    _require(actor, "tickets.change_supportteam", "manage support teams")
    members = list(members)
    for member in members:
        if not is_assignable(member):
            raise ValidationError({"members": f"{member.get_username()} does not work tickets."})
        AgentProfile.objects.get_or_create(user=member)
    before = sorted(team.members.values_list("username", flat=True))
    team.members.set(members)
    after = sorted(m.get_username() for m in members)
    if before != after:
        record(
            "support_team.members_changed",
            target=team,
            changes={"members": [before, after]},
            actor=actor,
        )
    return team


@transaction.atomic
def set_category_routing(
    *, actor, category: Category, team: SupportTeam | None, strategy: str
) -> Category:
    _require(actor, "tickets.change_category", "change how categories are routed")
    if strategy not in AssignmentStrategy.values:
        raise ValidationError(
            {
                "strategy": f"Unknown strategy {strategy!r}. Allowed values: {', '.join(AssignmentStrategy.values)}."
            }
        )
    if strategy != AssignmentStrategy.MANUAL and team is None:
        raise ValidationError({"team": "Automatic assignment needs a team to choose from."})
    category = Category.objects.select_for_update().get(pk=category.pk)
    changes = {}
    if category.team_id != (team.pk if team else None):
        changes["team"] = [
            category.team.name if category.team else None,
            team.name if team else None,
        ]
        category.team = team
    if category.assignment_strategy != strategy:
        changes["assignment_strategy"] = [category.assignment_strategy, strategy]
        category.assignment_strategy = strategy
    if changes:
        category.save(update_fields=["team", "assignment_strategy"])
        record("ticket_category.routing_changed", target=category, changes=changes, actor=actor)
    return category
