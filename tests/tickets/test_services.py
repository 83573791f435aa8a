"""Ticket services: rules, timeline, audit events, emails after commit, locking."""

from __future__ import annotations

import threading

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from adminsite import roles
from audit.models import AuditEntry
from tests.factories import CustomerFactory, StaffFactory
from tests.processes import wait_until
from tests.tickets.helpers import queued_tasks, run_queued_tasks
from tickets import services
from tickets.models import (
    Category,
    Comment,
    EmailNotification,
    EventKind,
    SavedView,
    Status,
    Ticket,
    TicketEvent,
)

pytestmark = pytest.mark.django_db


def events(ticket, kind=None) -> list[tuple[str, str, str]]:
    qs = TicketEvent.objects.filter(ticket=ticket).order_by("created_at", "id")
    if kind:
        qs = qs.filter(kind=kind)
    return [(e.kind, e.from_value, e.to_value) for e in qs]


def audit_events(ticket) -> list[str]:
    return list(
        AuditEntry.objects.filter(object_pk=str(ticket.pk), event__startswith="ticket.")
        .order_by("id")
        .values_list("event", flat=True)
    )


# --- create --------------------------------------------------------------------------------


def test_customer_opens_a_ticket_for_themselves(categories, customer):
    ticket = services.create_ticket(
        actor=customer,
        subject="  Email sync   not working ",
        description="Gmail stopped.",
        category=categories["email_sync"],
        priority="high",
        requester=customer,
        channel="api",
        tags=["Gmail", "oauth", "gmail"],
    )
    assert ticket.status == Status.NEW
    assert ticket.subject == "Email sync not working"
    assert ticket.tags == ["gmail", "oauth"]
    assert ticket.ticket_number > 1000
    assert ticket.priority_rank == 3  # generated, returned by the INSERT
    assert events(ticket) == [(EventKind.CREATED, "", "new")]
    entry = AuditEntry.objects.get(event="ticket.created", object_pk=str(ticket.pk))
    assert entry.actor == customer
    assert entry.additional_data["channel"] == "api"


def test_customer_cannot_open_a_ticket_for_someone_else(categories, customer, other_customer):
    with pytest.raises(PermissionDenied):
        services.create_ticket(
            actor=customer,
            subject="Hi",
            description="x",
            category=categories["other"],
            requester=other_customer,
        )
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("subject", {"subject": ""}),
        ("subject", {"subject": "x" * 201}),
        ("description", {"description": "   "}),
        ("description", {"description": "x" * 20_001}),
        ("priority", {"priority": "critical"}),
        ("tags", {"tags": ["not a tag!"]}),
        ("tags", {"tags": [f"t{i}" for i in range(21)]}),
        ("channel", {"channel": "fax"}),
    ],
)
def test_create_rejects_bad_input_and_saves_nothing(categories, customer, field, kwargs):
    values = {"subject": "Sync", "description": "Broken", "category": categories["bug"], **kwargs}
    with pytest.raises(ValidationError) as error:
        services.create_ticket(actor=customer, requester=customer, **values)
    assert field in error.value.message_dict
    assert not Ticket.objects.exists()
    assert not TicketEvent.objects.exists()


def test_staff_cannot_be_the_requester_and_assignee_must_work_tickets(
    categories, agent, ops, customer
):
    with pytest.raises(ValidationError) as error:
        services.create_ticket(
            actor=agent, subject="s", description="d", category=categories["bug"], requester=agent
        )
    assert "requester" in error.value.message_dict
    with pytest.raises(ValidationError) as error:
        services.create_ticket(
            actor=agent,
            subject="s",
            description="d",
            category=categories["bug"],
            requester=customer,
            assignee=ops,
        )
    assert "assignee" in error.value.message_dict
    assert not Ticket.objects.exists()


def test_inactive_category_is_refused(categories, customer):
    Category.objects.filter(pk=categories["other"].pk).update(is_active=False)
    categories["other"].refresh_from_db()
    with pytest.raises(ValidationError) as error:
        services.create_ticket(
            actor=customer,
            subject="s",
            description="d",
            category=categories["other"],
            requester=customer,
        )
    assert "category" in error.value.message_dict


def test_staff_create_with_assignee_mails_the_assignee_after_commit(
    categories, agent, agent2, customer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        ticket = services.create_ticket(
            actor=agent,
            subject="Refund",
            description="Double charge",
            category=categories["billing"],
            requester=customer,
            assignee=agent2,
        )
    assert queued_tasks(callbacks) == [
        ("tickets.send_assignment_email", (ticket.pk, agent2.pk, events_ids(ticket)[-1]))
    ]
    assert mail.outbox == []  # nothing is sent before the commit
    run_queued_tasks(callbacks)
    (message,) = mail.outbox
    assert message.to == [agent2.email]
    assert f"#{ticket.ticket_number}" in message.subject
    assert f"/admin/support/{ticket.pk}/" in message.body


def events_ids(ticket) -> list[int]:
    return list(
        TicketEvent.objects.filter(ticket=ticket).order_by("id").values_list("id", flat=True)
    )


# --- update and assign ---------------------------------------------------------------------


def test_update_writes_timeline_and_one_audit_event_with_changes(make_ticket, agent, categories):
    ticket = make_ticket()
    ticket = services.update_ticket(
        actor=agent,
        ticket=ticket,
        subject="New subject",
        priority="urgent",
        category=categories["billing"],
        tags=["VIP"],
    )
    assert (ticket.subject, ticket.priority, ticket.category.slug, ticket.tags) == (
        "New subject",
        "urgent",
        "billing",
        ["vip"],
    )
    assert ticket.priority_rank == 4
    kinds = [kind for kind, _, _ in events(ticket)]
    assert kinds == ["created", "subject", "priority", "category", "tags"]
    entry = AuditEntry.objects.get(event="ticket.updated", object_pk=str(ticket.pk))
    assert entry.actor == agent
    assert entry.changes_dict["priority"] == ["normal", "urgent"]


def test_update_without_changes_writes_nothing(make_ticket, agent):
    ticket = make_ticket(priority="high")
    services.update_ticket(actor=agent, ticket=ticket, priority="high", subject=ticket.subject)
    assert events(ticket) == [("created", "", "new")]
    assert "ticket.updated" not in audit_events(ticket)


def test_customers_cannot_update(make_ticket, customer):
    ticket = make_ticket()
    with pytest.raises(PermissionDenied):
        services.update_ticket(actor=customer, ticket=ticket, priority="urgent")


def test_assign_reassign_and_unassign(
    make_ticket, agent, agent2, django_capture_on_commit_callbacks
):
    ticket = make_ticket()
    with django_capture_on_commit_callbacks() as callbacks:
        services.assign_ticket(actor=agent, ticket=ticket, assignee=agent)  # to themself: no mail
    assert queued_tasks(callbacks) == []
    with django_capture_on_commit_callbacks() as callbacks:
        services.assign_ticket(actor=agent, ticket=ticket, assignee=agent2)
    assert [name for name, _ in queued_tasks(callbacks)] == ["tickets.send_assignment_email"]
    services.assign_ticket(actor=agent, ticket=ticket, assignee=None)
    assert events(ticket, EventKind.ASSIGNEE) == [
        ("assignee", "", "Sam Carter"),
        ("assignee", "Sam Carter", "Lena Fischer"),
        ("assignee", "Lena Fischer", ""),
    ]
    assert audit_events(ticket).count("ticket.assigned") == 2
    assert "ticket.unassigned" in audit_events(ticket)
    assert Ticket.objects.get(pk=ticket.pk).assignee is None


@pytest.mark.parametrize("who", ["customer", "ops", "inactive"])
def test_assignee_must_be_an_active_staff_member_who_works_tickets(
    make_ticket, agent, customer, ops, who
):
    ticket = make_ticket()
    target = {"customer": customer, "ops": ops, "inactive": StaffFactory(role=roles.SUPPORT_AGENT)}[
        who
    ]
    if who == "inactive":
        target.is_active = False
        target.save(update_fields=["is_active"])
    with pytest.raises(ValidationError) as error:
        services.assign_ticket(actor=agent, ticket=ticket, assignee=target)
    assert "assignee" in error.value.message_dict
    assert Ticket.objects.get(pk=ticket.pk).assignee is None
    assert events(ticket, EventKind.ASSIGNEE) == []


# --- status --------------------------------------------------------------------------------


def test_status_transitions_stamp_times_and_mail_the_resolution(
    make_ticket, agent, customer, django_capture_on_commit_callbacks
):
    ticket = make_ticket()
    ticket = services.change_status(actor=agent, ticket=ticket, status="pending")
    with django_capture_on_commit_callbacks() as callbacks:
        ticket = services.resolve(actor=agent, ticket=ticket)
    assert ticket.resolved_at is not None
    run_queued_tasks(callbacks)
    (message,) = mail.outbox
    assert message.to == [customer.email]
    assert "resolved" in message.subject.lower()
    ticket = services.reopen(actor=agent, ticket=ticket)
    assert (ticket.status, ticket.resolved_at, ticket.closed_at) == ("open", None, None)
    ticket = services.close(actor=agent, ticket=ticket)
    assert ticket.closed_at is not None
    assert events(ticket, EventKind.STATUS) == [
        ("status", "new", "pending"),
        ("status", "pending", "resolved"),
        ("status", "resolved", "open"),
        ("status", "open", "closed"),
    ]
    assert audit_events(ticket)[-4:] == [
        "ticket.status_changed",
        "ticket.resolved",
        "ticket.reopened",
        "ticket.closed",
    ]


def test_forbidden_transition_names_the_allowed_ones_and_changes_nothing(make_ticket, agent):
    ticket = make_ticket(status="resolved", actor=agent)
    with pytest.raises(ValidationError) as error:
        services.change_status(actor=agent, ticket=ticket, status="pending")
    message = error.value.message_dict["status"][0]
    assert "resolved to pending" in message and "open, closed" in message
    assert Ticket.objects.get(pk=ticket.pk).status == "resolved"
    with pytest.raises(ValidationError):
        services.change_status(actor=agent, ticket=ticket, status="new")
    with pytest.raises(ValidationError) as error:
        services.change_status(actor=agent, ticket=ticket, status="archived")
    assert "Allowed values" in error.value.message_dict["status"][0]


def test_closed_ticket_reopens_only_for_a_lead(make_ticket, agent, lead):
    ticket = make_ticket(status="closed", actor=agent)
    with pytest.raises(PermissionDenied):
        services.reopen(actor=agent, ticket=ticket)
    with pytest.raises(PermissionDenied):
        services.change_status(actor=agent, ticket=ticket, status="open")
    assert Ticket.objects.get(pk=ticket.pk).status == "closed"
    ticket = services.reopen(actor=lead, ticket=ticket)
    assert ticket.status == "open" and ticket.closed_at is None


def test_reopen_refuses_an_active_ticket(make_ticket, agent):
    with pytest.raises(ValidationError):
        services.reopen(actor=agent, ticket=make_ticket())


def test_same_status_is_a_no_op(make_ticket, agent):
    ticket = make_ticket(status="open", actor=agent)
    services.change_status(actor=agent, ticket=ticket, status="open")
    assert len(events(ticket, EventKind.STATUS)) == 1


# --- comments ------------------------------------------------------------------------------


def test_first_public_staff_reply_records_the_first_response_and_opens(
    make_ticket, agent, customer, django_capture_on_commit_callbacks
):
    ticket = make_ticket()
    with django_capture_on_commit_callbacks() as callbacks:
        services.add_comment(
            actor=agent, ticket=ticket, body="Token needs refresh.", is_internal=True
        )
    ticket.refresh_from_db()
    assert ticket.first_responded_at is None and ticket.status == "new"
    assert queued_tasks(callbacks) == []  # internal notes are never mailed

    with django_capture_on_commit_callbacks() as callbacks:
        reply = services.add_comment(
            actor=agent, ticket=ticket, body="Please reconnect your mailbox."
        )
    ticket.refresh_from_db()
    assert ticket.first_responded_at == reply.created_at
    assert ticket.status == "open"
    assert queued_tasks(callbacks) == [("tickets.send_reply_email", (reply.pk,))]
    run_queued_tasks(callbacks)
    (message,) = mail.outbox
    assert message.to == [customer.email]
    assert "Please reconnect your mailbox." in message.body
    assert "Token needs refresh" not in message.body
    assert message.extra_headers["References"] == f"<ticket-{ticket.pk}@127.0.0.1>"

    services.add_comment(actor=agent, ticket=ticket, body="Second reply")
    ticket.refresh_from_db()
    assert ticket.first_responded_at == reply.created_at  # only the first counts


@pytest.mark.parametrize("status", ["pending", "resolved"])
def test_customer_reply_reopens_a_waiting_or_resolved_ticket(make_ticket, agent, customer, status):
    ticket = make_ticket(status=status, actor=agent)
    services.add_comment(actor=customer, ticket=ticket, body="Still broken.")
    ticket.refresh_from_db()
    assert ticket.status == "open"
    entry = (
        AuditEntry.objects.filter(
            object_pk=str(ticket.pk), event__in=["ticket.status_changed", "ticket.reopened"]
        )
        .order_by("id")
        .last()
    )
    assert entry.actor == customer
    assert entry.additional_data == {"reason": "customer replied"}


def test_comment_on_a_closed_ticket_is_refused(make_ticket, agent, customer):
    ticket = make_ticket(status="closed", actor=agent)
    for actor in (customer, agent):
        with pytest.raises(ValidationError) as error:
            services.add_comment(actor=actor, ticket=ticket, body="Hello?")
        assert "closed" in error.value.message_dict["comment"][0]
    assert not Comment.objects.filter(ticket=ticket).exists()


def test_customers_cannot_post_internal_notes_or_on_others_tickets(
    make_ticket, customer, other_customer
):
    ticket = make_ticket()
    with pytest.raises(ValidationError) as error:
        services.add_comment(actor=customer, ticket=ticket, body="psst", is_internal=True)
    assert "is_internal" in error.value.message_dict
    with pytest.raises(PermissionDenied):
        services.add_comment(actor=other_customer, ticket=ticket, body="hi")
    assert not Comment.objects.exists()


def test_reply_parent_must_be_visible_and_on_the_same_ticket(make_ticket, agent, customer):
    ticket, other = make_ticket(), make_ticket()
    note = services.add_comment(actor=agent, ticket=ticket, body="internal", is_internal=True)
    foreign = services.add_comment(actor=agent, ticket=other, body="elsewhere")
    with pytest.raises(ValidationError):
        services.add_comment(actor=customer, ticket=ticket, body="reply", parent=note)
    with pytest.raises(ValidationError):
        services.add_comment(actor=agent, ticket=ticket, body="reply", parent=foreign)
    reply = services.add_comment(
        actor=agent, ticket=ticket, body="reply to note", parent=note, is_internal=True
    )
    assert reply.parent_id == note.pk


def test_blank_and_overlong_comments_are_refused(make_ticket, agent):
    ticket = make_ticket()
    for body in ("", "   ", "x" * 20_001):
        with pytest.raises(ValidationError) as error:
            services.add_comment(actor=agent, ticket=ticket, body=body)
        assert "comment" in error.value.message_dict


# --- merge ---------------------------------------------------------------------------------


def test_merge_moves_comments_and_closes_the_duplicate_with_a_link(make_ticket, agent, customer):
    target = make_ticket(subject="Sync broken", tags=["gmail"])
    source = make_ticket(
        subject="Sync broken again", description="Same as before", tags=["urgent-fix"]
    )
    moved = services.add_comment(actor=customer, ticket=source, body="Any news?")
    services.merge_tickets(actor=agent, source=source, target=target)

    source.refresh_from_db()
    target.refresh_from_db()
    assert source.status == "closed" and source.merged_into_id == target.pk and source.closed_at
    assert target.tags == ["gmail", "urgent-fix"]
    bodies = list(
        Comment.objects.filter(ticket=target)
        .order_by("created_at")
        .values_list("body", "merged_from_id")
    )
    assert bodies == [("Same as before", source.pk), ("Any news?", source.pk)]
    assert Comment.objects.get(pk=moved.pk).ticket_id == target.pk
    assert events(source)[-2:] == [
        ("status", "new", "closed"),
        ("merged_into", "", f"#{target.ticket_number}"),
    ]
    assert events(target)[-1] == ("merged_from", f"#{source.ticket_number}", "")
    entry = AuditEntry.objects.get(event="ticket.merged", object_pk=str(source.pk))
    assert entry.additional_data["into_ticket_id"] == target.pk
    # A merged ticket cannot be reopened, not even by a lead.
    with pytest.raises(ValidationError):
        services.reopen(actor=StaffFactory(role=roles.SUPPORT_LEAD), ticket=source)


def test_merge_refusals(make_ticket, agent, other_customer):
    ticket = make_ticket()
    with pytest.raises(ValidationError):
        services.merge_tickets(actor=agent, source=ticket, target=ticket)
    with pytest.raises(ValidationError) as error:
        services.merge_tickets(
            actor=agent, source=make_ticket(requester=other_customer), target=ticket
        )
    assert "same customer" in error.value.message_dict["target"][0]
    closed = make_ticket(status="closed", actor=agent)
    with pytest.raises(ValidationError):
        services.merge_tickets(actor=agent, source=make_ticket(), target=closed)
    assert not Ticket.objects.filter(merged_into__isnull=False).exists()


# --- bulk ----------------------------------------------------------------------------------


def test_bulk_assign_and_close(make_ticket, agent, agent2):
    tickets = [make_ticket() for _ in range(3)]
    ids = [t.pk for t in tickets]
    services.assign_ticket(actor=agent, ticket=tickets[0], assignee=agent2)
    result = services.bulk_assign(actor=agent, ticket_ids=ids, assignee=agent2)
    assert (len(result.changed), len(result.unchanged)) == (2, 1)
    assert set(Ticket.objects.filter(pk__in=ids).values_list("assignee", flat=True)) == {agent2.pk}
    result = services.bulk_close(actor=agent, ticket_ids=ids)
    assert len(result.changed) == 3
    assert set(Ticket.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"closed"}
    assert (
        AuditEntry.objects.filter(
            event="ticket.closed", object_pk__in=[str(i) for i in ids]
        ).count()
        == 3
    )


def test_bulk_status_is_all_or_nothing(make_ticket, agent):
    fine = make_ticket()
    resolved = make_ticket(status="resolved", actor=agent)
    with pytest.raises(ValidationError) as error:
        services.bulk_change_status(
            actor=agent, ticket_ids=[fine.pk, resolved.pk], status="pending"
        )
    assert f"#{resolved.ticket_number}" in error.value.message_dict["status"][0]
    assert Ticket.objects.get(pk=fine.pk).status == "new"


def test_bulk_limits(make_ticket, agent):
    ticket = make_ticket()
    with pytest.raises(ValidationError):
        services.bulk_close(actor=agent, ticket_ids=[])
    with pytest.raises(ValidationError):
        services.bulk_close(actor=agent, ticket_ids=list(range(1, 502)))
    with pytest.raises(ValidationError) as error:
        services.bulk_close(actor=agent, ticket_ids=[ticket.pk, 987654321])
    assert "987654321" in error.value.message_dict["tickets"][0]
    assert Ticket.objects.get(pk=ticket.pk).status == "new"


# --- concurrency ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_agents_changing_one_ticket_at_once_both_land_in_order(categories):
    customer = CustomerFactory()
    first, second = StaffFactory(role=roles.SUPPORT_AGENT), StaffFactory(role=roles.SUPPORT_AGENT)
    ticket = services.create_ticket(
        actor=customer,
        subject="Race",
        description="d",
        category=categories["bug"],
        requester=customer,
    )
    barrier = threading.Barrier(2)
    errors = []

    def work(actor, status):
        try:
            barrier.wait(5)
            services.change_status(actor=actor, ticket=ticket, status=status)
            services.update_ticket(
                actor=actor, ticket=ticket, priority="urgent" if status == "open" else "high"
            )
        except Exception as exc:  # reported below  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=work, args=(first, "open")),
        threading.Thread(target=work, args=(second, "pending")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert errors == []
    statuses = events(ticket, EventKind.STATUS)
    priorities = events(ticket, EventKind.PRIORITY)
    assert len(statuses) == 2 and len(priorities) == 2
    # Each change saw the one before it: the chain of from/to values is unbroken.
    assert statuses[0][1] == "new" and statuses[1][1] == statuses[0][2]
    assert priorities[0][1] == "normal" and priorities[1][1] == priorities[0][2]
    final = Ticket.objects.get(pk=ticket.pk)
    assert final.status == statuses[1][2] and final.priority == priorities[1][2]


# --- emails --------------------------------------------------------------------------------


def test_email_tasks_are_idempotent_and_recheck_at_send_time(
    make_ticket, agent, django_capture_on_commit_callbacks
):
    ticket = make_ticket()
    with django_capture_on_commit_callbacks() as callbacks:
        reply = services.add_comment(actor=agent, ticket=ticket, body="Fixed on our side.")
    run_queued_tasks(callbacks)
    run_queued_tasks(callbacks)  # a redelivered task
    assert len(mail.outbox) == 1
    assert EmailNotification.objects.filter(key=f"reply:{reply.pk}").count() == 1

    # A reply turned into an internal note before the worker got to it is not mailed.
    with django_capture_on_commit_callbacks() as callbacks:
        later = services.add_comment(actor=agent, ticket=ticket, body="Oops, meant as a note.")
    Comment.objects.filter(pk=later.pk).update(is_internal=True)
    run_queued_tasks(callbacks)
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_mails_public_replies_and_never_internal_notes(celery_worker, categories):
    customer = CustomerFactory()
    agent = StaffFactory(role=roles.SUPPORT_AGENT)
    ticket = services.create_ticket(
        actor=customer,
        subject="Worker",
        description="d",
        category=categories["bug"],
        requester=customer,
    )
    note = services.add_comment(actor=agent, ticket=ticket, body="internal only", is_internal=True)
    reply = services.add_comment(actor=agent, ticket=ticket, body="Public answer")
    wait_until(
        lambda: EmailNotification.objects.filter(key=f"reply:{reply.pk}").exists(),
        timeout=30,
        what="the worker mailing the reply",
    )
    sent = EmailNotification.objects.get(key=f"reply:{reply.pk}")
    assert sent.recipient == customer.email and sent.kind == "reply"
    assert not EmailNotification.objects.filter(key=f"reply:{note.pk}").exists()


# --- customer context, canned replies, saved views -----------------------------------------


def test_viewing_the_customer_context_is_an_audited_access(make_ticket, agent, customer):
    ticket = make_ticket()
    services.record_customer_context_viewed(actor=agent, ticket=ticket)
    entry = AuditEntry.objects.get(event="customer.viewed", object_pk=str(customer.pk))
    assert entry.actor == agent
    assert entry.additional_data["ticket_id"] == ticket.pk


def test_canned_replies(agent, customer):
    reply = services.create_canned_reply(actor=agent, title="Reconnect", body="Please reconnect.")
    with pytest.raises(ValidationError):
        services.create_canned_reply(actor=agent, title="reconnect", body="dup")
    with pytest.raises(PermissionDenied):
        services.create_canned_reply(actor=customer, title="x", body="y")
    reply = services.update_canned_reply(actor=agent, reply=reply, body="Please reconnect now.")
    assert reply.body == "Please reconnect now."
    services.delete_canned_reply(actor=agent, reply=reply)
    assert list(
        AuditEntry.objects.filter(event__startswith="canned_reply.")
        .order_by("id")
        .values_list("event", flat=True)
    ) == [
        "canned_reply.created",
        "canned_reply.updated",
        "canned_reply.deleted",
    ]


def test_saved_views_belong_to_their_user(agent, agent2):
    view = services.save_view(actor=agent, name="Billing backlog", query_string="?category=billing")
    assert view.query_string == "category=billing"
    again = services.save_view(
        actor=agent, name="Billing backlog", query_string="category=billing&priority=high"
    )
    assert again.pk == view.pk and SavedView.objects.count() == 1
    with pytest.raises(ValidationError):
        services.save_view(actor=agent, name=" ", query_string="")
    with pytest.raises(PermissionDenied):
        services.delete_saved_view(actor=agent2, view=view)
    services.delete_saved_view(actor=agent, view=view)
    assert not SavedView.objects.exists()
