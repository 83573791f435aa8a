"""The per-minute SLA scan: warnings and breaches marked set-based, announced once per ticket
and target (console notification + email + audit event), only in business hours unless
urgent; paused tickets skipped; the queue's counters and the `breached` filter follow."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from adminsite.schedules import BEAT_SCHEDULE
from audit.models import AuditEntry
from tests.tickets.helpers import run_with_tasks
from tickets import queries, services
from tickets.filters import TicketFilters
from tickets.models import SLAAlert, SupportNotification, Ticket

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
T0 = dt.datetime(2025, 6, 16, 10, tzinfo=BERLIN)  # Monday
FRIDAY_15 = dt.datetime(2025, 6, 20, 15, tzinfo=BERLIN)


def scan(when, capture):
    """One beat of the scan at ``when``, with the tasks it queues (announcing, emails);
    ``sent`` is how many alerts were announced."""
    before = SLAAlert.objects.filter(sent_at__isnull=False).count()
    with time_machine.travel(when, tick=False):
        counts, _tasks = run_with_tasks(capture, services.run_sla_scan)
    counts["sent"] = SLAAlert.objects.filter(sent_at__isnull=False).count() - before
    return counts


def notes(user) -> list[tuple[str, int]]:
    return list(
        SupportNotification.objects.filter(user=user)
        .order_by("id")
        .values_list("kind", "ticket__ticket_number")
    )


def test_warning_then_breach_announced_once_each(
    make_ticket, agent, lead, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        ticket = make_ticket(priority="urgent", assignee=agent)  # 24/7: answer within 1 h
    mail.outbox.clear()
    counts = scan(T0 + dt.timedelta(minutes=47), django_capture_on_commit_callbacks)
    assert counts["first_response_warning"] == 0 and counts["sent"] == 0

    counts = scan(T0 + dt.timedelta(minutes=49), django_capture_on_commit_callbacks)
    assert counts["first_response_warning"] == 1 and counts["sent"] == 1
    assert notes(agent) == [("warning", ticket.ticket_number)]
    assert notes(lead) == []  # leads hear of breaches only
    assert [m.to for m in mail.outbox] == [[agent.email]]
    assert "SLA warning" in mail.outbox[0].subject

    # Idempotent: a second scan (or a retried one) adds nothing and mails nobody.
    counts = scan(T0 + dt.timedelta(minutes=50), django_capture_on_commit_callbacks)
    assert counts["first_response_warning"] == 0 and counts["sent"] == 0
    assert len(mail.outbox) == 1 and len(notes(agent)) == 1

    scan(T0 + dt.timedelta(minutes=61), django_capture_on_commit_callbacks)
    scan(T0 + dt.timedelta(minutes=62), django_capture_on_commit_callbacks)
    assert notes(agent) == [("warning", ticket.ticket_number), ("breach", ticket.ticket_number)]
    assert notes(lead) == [("breach", ticket.ticket_number)]
    assert sorted(m.to[0] for m in mail.outbox[1:]) == sorted([agent.email, lead.email])
    assert all("SLA breached" in m.subject for m in mail.outbox[1:])
    ticket.refresh_from_db()
    assert ticket.sla_breached and ticket.sla_first_response_breached
    assert ticket.sla_first_response_warning
    events = list(
        AuditEntry.objects.filter(object_pk=str(ticket.pk), event__startswith="ticket.sla_")
        .order_by("id")
        .values_list("event", flat=True)
    )
    assert events == ["ticket.sla_warning", "ticket.sla_breached"]
    # The queue's counters (trigger-kept) and the list filter see the breach.
    assert queries.queue_stats(filters=TicketFilters())["breached"] == 1


def test_resolution_breaches_after_first_response_is_met(
    make_ticket, agent, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        ticket = make_ticket(priority="urgent", assignee=agent)
    with time_machine.travel(T0 + dt.timedelta(minutes=5), tick=False):
        services.add_comment(actor=agent, ticket=ticket, body="Looking.")
    counts = scan(T0 + dt.timedelta(hours=4, minutes=1), django_capture_on_commit_callbacks)
    assert counts["first_response_breach"] == 0
    assert counts["resolution_breach"] == 1
    ticket.refresh_from_db()
    assert ticket.sla_resolution_breached and not ticket.sla_first_response_breached


def test_paused_tickets_are_not_marked(make_ticket, agent, django_capture_on_commit_callbacks):
    with time_machine.travel(T0, tick=False):
        ticket = make_ticket(priority="urgent", assignee=agent)
        services.change_status(actor=agent, ticket=ticket, status="pending")
    counts = scan(T0 + dt.timedelta(days=2), django_capture_on_commit_callbacks)
    assert not any(counts.values())
    ticket.refresh_from_db()
    assert not ticket.sla_breached and not SLAAlert.objects.exists()


@pytest.fixture
def office(lead):
    calendar = services.create_calendar(
        actor=lead,
        name="Berlin office",
        time_zone="Europe/Berlin",
        weekly_hours=[[[540, 1020]]] * 5 + [[], []],
    )
    for position, priority in enumerate(["normal", "urgent"], start=1):
        services.create_sla_policy(
            actor=lead,
            name=f"{priority} office",
            position=position,
            priority=priority,
            first_response_minutes=120 if priority == "normal" else 60,
            resolution_minutes=960,
            calendar=calendar,
        )
    return calendar


def test_outside_business_hours_only_urgent_tickets_are_announced(
    make_ticket, agent, lead, office, django_capture_on_commit_callbacks
):
    with time_machine.travel(FRIDAY_15, tick=False):
        normal = make_ticket(subject="Normal", assignee=agent)  # due Friday 17:00
        answered = make_ticket(subject="Answered Monday early", assignee=agent)
    with time_machine.travel(FRIDAY_15 + dt.timedelta(hours=1), tick=False):
        urgent = make_ticket(subject="Urgent", priority="urgent")  # due Friday 17:00
    mail.outbox.clear()
    friday_night = FRIDAY_15 + dt.timedelta(hours=2, minutes=30)
    counts = scan(friday_night, django_capture_on_commit_callbacks)
    assert counts["first_response_breach"] == 3
    # Marked at once (the queue shows them), but only the urgent one is announced now.
    assert counts["sent"] == 1
    assert notes(lead) == [("breach", urgent.ticket_number)]
    assert notes(agent) == []
    monday = dt.datetime(2025, 6, 23, 9, tzinfo=BERLIN)
    assert set(
        SLAAlert.objects.filter(sent_at__isnull=True).values_list("notify_after", flat=True)
    ) == {monday}
    # Nothing more over the weekend.
    assert (
        scan(friday_night + dt.timedelta(days=1), django_capture_on_commit_callbacks)["sent"] == 0
    )
    # Someone answers one ticket early on Monday: its alert is dropped, the other goes out.
    with time_machine.travel(monday - dt.timedelta(minutes=30), tick=False):
        services.add_comment(actor=agent, ticket=answered, body="Sorry, on it now.")
    counts = scan(monday + dt.timedelta(minutes=1), django_capture_on_commit_callbacks)
    assert counts["sent"] == 2
    assert notes(agent) == [("breach", normal.ticket_number)]
    assert sorted(m.to[0] for m in mail.outbox) == sorted([lead.email, lead.email, agent.email])
    assert not SLAAlert.objects.filter(sent_at__isnull=True).exists()


def test_the_breached_filter_and_json_keys_follow_the_clock(
    client, make_ticket, agent, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        late = make_ticket(subject="Late", priority="urgent")
        fine = make_ticket(subject="Fine", priority="low")
    with time_machine.travel(T0 + dt.timedelta(minutes=10), tick=False):
        services.add_comment(actor=agent, ticket=fine, body="Hello!")
    scan(T0 + dt.timedelta(minutes=61), django_capture_on_commit_callbacks)
    client.force_login(agent)
    body = client.get("/api/admin/support/tickets?breached=true&status=all").json()
    assert [row["id"] for row in body["results"]] == [late.pk]
    fine_json = client.get(f"/api/admin/support/tickets/{fine.pk}").json()
    assert fine_json["firstResponseDueAt"].startswith("2025-06-17T08:00:00")  # low: 24 h
    assert fine_json["firstRespondedAt"] is not None and fine_json["slaBreached"] is False
    assert fine_json["resolutionDueAt"].startswith("2025-06-21T08:00:00")
    late_json = client.get(f"/api/admin/support/tickets/{late.pk}").json()
    assert late_json["slaBreached"] is True and late_json["firstRespondedAt"] is None


def test_the_scan_runs_every_minute_from_beat():
    entry = BEAT_SCHEDULE["tickets.sla_scan"]
    assert entry["task"] == "tickets.sla_scan"
    assert entry["schedule"] == dt.timedelta(minutes=1)


def test_scan_with_nothing_due_is_cheap_and_queues_nothing(
    django_assert_max_num_queries, make_ticket, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        make_ticket()
    with (
        time_machine.travel(T0 + dt.timedelta(minutes=1), tick=False),
        django_assert_max_num_queries(10),
        django_capture_on_commit_callbacks() as callbacks,
    ):
        counts = services.run_sla_scan()
    assert not any(counts.values())
    assert callbacks == []
    assert Ticket.objects.count() == 1


def test_scan_queues_one_announcing_task_and_batched_emails(
    make_ticket, agent, lead, django_capture_on_commit_callbacks
):
    with time_machine.travel(T0, tick=False):
        for n in range(3):
            make_ticket(subject=f"Urgent {n}", priority="urgent", assignee=agent)
    with time_machine.travel(T0 + dt.timedelta(minutes=61), tick=False):
        counts, names = run_with_tasks(django_capture_on_commit_callbacks, services.run_sla_scan)
    assert counts["first_response_breach"] == 3 and counts["due"] == 3
    # One task announces all three; the six emails (agent and lead for each) go in one task.
    assert names == ["tickets.send_sla_alerts", "tickets.send_sla_alert_emails"]
    assert len(mail.outbox) == 6


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_scan_task_and_announces_once(celery_worker, categories):
    from adminsite import roles
    from tests.factories import CustomerFactory, StaffFactory
    from tests.processes import wait_until
    from tickets import tasks
    from tickets.models import EmailNotification

    lead = StaffFactory(role=roles.SUPPORT_LEAD)
    agent = StaffFactory(role=roles.SUPPORT_AGENT)
    customer = CustomerFactory()
    services.create_sla_policy(
        actor=lead,
        name="Urgent, worker test",
        priority="urgent",
        first_response_minutes=60,
        resolution_minutes=240,
    )
    with time_machine.travel(timezone.now() - dt.timedelta(hours=2), tick=False):
        ticket = services.create_ticket(
            actor=customer,
            requester=customer,
            subject="Worker scan",
            description="d",
            category=categories["bug"],
            priority="urgent",
        )
        services.assign_ticket(actor=agent, ticket=ticket, assignee=agent)
    tasks.sla_scan.delay()
    wait_until(
        lambda: EmailNotification.objects.filter(ticket=ticket, kind="sla_breach").count() == 2,
        timeout=40,
        what="the worker announcing the breach to the agent and the lead",
    )
    assert Ticket.objects.get(pk=ticket.pk).sla_breached
    # Another beat finds nothing new to mark or announce.
    again = services.run_sla_scan()
    assert again["first_response_breach"] == 0 and again["due"] == 0
    assert set(
        SupportNotification.objects.filter(ticket=ticket).values_list("user_id", "kind")
    ) == {(agent.pk, "breach"), (lead.pk, "breach")}
    assert SLAAlert.objects.filter(ticket=ticket, kind="breach").count() == 1
