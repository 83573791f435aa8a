"""The SLA clock through the ticket services: due times in business time, pausing, first
response, resolution, reopening, re-targeting, policy matching and the history kept."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import PermissionDenied, ValidationError

from audit.models import AuditEntry
from tickets import services, sla
from tickets.models import SLAPolicy, SLATarget, Ticket

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
# Monday 16 June 2025, 10:00 in Berlin: an ordinary working day.
MONDAY_10 = dt.datetime(2025, 6, 16, 10, tzinfo=BERLIN)
OFFICE_HOURS = [[[540, 1020]]] * 5 + [[], []]


def at(day_offset: int, hour: int, minute: int = 0) -> dt.datetime:
    day = MONDAY_10.date() + dt.timedelta(days=day_offset)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BERLIN)


@pytest.fixture
def office(lead):
    return services.create_calendar(
        actor=lead,
        name="Berlin office",
        time_zone="Europe/Berlin",
        weekly_hours=OFFICE_HOURS,
        holiday_country="DE",
    )


@pytest.fixture
def policy(lead, office):
    # Before the seeded defaults (positions 1001+): normal tickets, 2 h / 8 h business time.
    return services.create_sla_policy(
        actor=lead,
        name="Normal, office hours",
        position=10,
        priority="normal",
        first_response_minutes=120,
        resolution_minutes=480,
        calendar=office,
    )


def open_ticket(make_ticket, when=MONDAY_10, **kwargs) -> Ticket:
    with time_machine.travel(when, tick=False):
        return make_ticket(**kwargs)


def targets(ticket) -> list[tuple]:
    return list(
        SLATarget.objects.filter(ticket=ticket)
        .order_by("kind", "cycle")
        .values_list("kind", "cycle", "outcome", "margin_seconds")
    )


def test_new_ticket_gets_business_time_due_dates(make_ticket, policy):
    ticket = open_ticket(make_ticket)
    assert ticket.sla_policy == policy
    assert ticket.first_response_due_at == at(0, 12)
    assert ticket.resolution_due_at == at(1, 10)  # Mon 10–17 is 7 h, then Tue 09–10
    assert ticket.first_response_warn_at == at(0, 11, 36)  # 80% of two hours
    assert ticket.next_due_at == at(0, 12)
    assert targets(ticket) == [
        ("first_response", 1, "running", None),
        ("resolution", 1, "running", None),
    ]


def test_a_ticket_opened_at_night_starts_counting_at_opening_time(make_ticket, policy):
    ticket = open_ticket(make_ticket, when=at(4, 22))  # Friday 22:00
    assert ticket.first_response_due_at == at(7, 11)  # Monday 09:00 + 2 h


def test_default_policies_run_around_the_clock(make_ticket):
    ticket = open_ticket(make_ticket, when=at(5, 3), priority="urgent")  # Saturday 03:00
    assert ticket.sla_policy.name == "Urgent (default)"
    assert ticket.first_response_due_at == at(5, 4)
    assert ticket.resolution_due_at == at(5, 7)
    defaults = {
        p.priority: (p.first_response_minutes, p.resolution_minutes)
        for p in SLAPolicy.objects.filter(name__endswith="(default)")
    }
    assert defaults == {
        "urgent": (60, 240),
        "high": (240, 1440),
        "normal": (480, 4320),
        "low": (1440, 7200),
    }


def test_pending_pauses_and_the_paused_business_time_is_added_back(make_ticket, policy, agent):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 11), tick=False):
        services.change_status(actor=agent, ticket=ticket, status="pending")
    ticket.refresh_from_db()
    assert ticket.sla_paused_at == at(0, 11)
    # Customer answers Tuesday 11:00: 6 h Monday + 2 h Tuesday of business time passed.
    with time_machine.travel(at(1, 11), tick=False):
        services.change_status(actor=agent, ticket=ticket, status="open")
    ticket.refresh_from_db()
    assert ticket.sla_paused_at is None
    assert ticket.sla_paused_seconds == 8 * 3600
    assert ticket.first_response_due_at == at(1, 12)  # Mon 12:00 moved by exactly 8 h
    assert ticket.resolution_due_at == at(2, 10)  # Tue 10:00 moved by exactly 8 h
    schedule = sla.schedule_of_policy(policy)
    assert sla.between(schedule, at(0, 12), ticket.first_response_due_at) == dt.timedelta(hours=8)
    assert set(
        SLATarget.objects.filter(ticket=ticket).values_list("paused_seconds", flat=True)
    ) == {8 * 3600}


def test_on_hold_pauses_too_and_a_customer_reply_resumes(make_ticket, policy, agent, customer):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 10, 30), tick=False):
        services.change_status(actor=agent, ticket=ticket, status="on_hold")
    with time_machine.travel(at(0, 11), tick=False):
        services.change_status(actor=agent, ticket=ticket, status="pending")
    with time_machine.travel(at(0, 16), tick=False):
        services.add_comment(actor=customer, ticket=ticket, body="Here are the logs.")
    ticket.refresh_from_db()
    assert ticket.status == "open"
    assert ticket.sla_paused_seconds == 5.5 * 3600
    assert ticket.first_response_due_at == at(1, 9, 30)  # 1 h 30 left: 16–17 h, then 09–09:30


def test_first_public_staff_reply_meets_the_first_response_target(make_ticket, policy, agent):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 11), tick=False):
        services.add_comment(actor=agent, ticket=ticket, body="Note", is_internal=True)
    assert targets(ticket)[0][2] == "running"  # internal notes do not answer the customer
    with time_machine.travel(at(0, 11, 30), tick=False):
        services.add_comment(actor=agent, ticket=ticket, body="We are on it.")
    ticket.refresh_from_db()
    assert ticket.first_responded_at == at(0, 11, 30)
    assert ticket.next_due_at == ticket.resolution_due_at
    assert targets(ticket)[0] == ("first_response", 1, "met", 30 * 60)


def test_late_resolution_is_breached_by_how_much_and_history_survives_close_and_reopen(
    make_ticket, policy, agent, lead
):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 13), tick=False):  # one business hour late
        services.add_comment(actor=agent, ticket=ticket, body="Sorry for the wait.")
    with time_machine.travel(at(1, 9, 30), tick=False):  # half an hour early
        services.resolve(actor=agent, ticket=ticket)
    with time_machine.travel(at(1, 12), tick=False):
        services.close(actor=agent, ticket=ticket)
    ticket.refresh_from_db()
    assert targets(ticket) == [
        ("first_response", 1, "breached", -3600),
        ("resolution", 1, "met", 1800),
    ]
    assert ticket.sla_first_response_breached and ticket.sla_breached
    # A lead reopens: the resolution clock restarts, the first cycle stays on record.
    with time_machine.travel(at(2, 14), tick=False):
        services.reopen(actor=lead, ticket=ticket)
    ticket.refresh_from_db()
    assert ticket.resolution_due_at == at(3, 14)
    assert not ticket.sla_resolution_breached and ticket.sla_first_response_breached
    assert targets(ticket) == [
        ("first_response", 1, "breached", -3600),
        ("resolution", 1, "met", 1800),
        ("resolution", 2, "running", None),
    ]


def test_resolving_while_pending_resumes_first(make_ticket, policy, agent):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 11), tick=False):
        services.add_comment(actor=agent, ticket=ticket, body="Can you send a screenshot?")
        services.change_status(actor=agent, ticket=ticket, status="pending")
    # Two working days later: without the pause this would be late; paused, it is on time.
    with time_machine.travel(at(2, 11), tick=False):
        services.resolve(actor=agent, ticket=ticket)
    assert targets(ticket)[1] == ("resolution", 1, "met", 7 * 3600)


def test_changing_priority_or_category_recomputes_the_targets(
    make_ticket, policy, agent, lead, categories
):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 10, 30), tick=False):
        services.update_ticket(actor=agent, ticket=ticket, priority="urgent")
    ticket.refresh_from_db()
    assert ticket.sla_policy.name == "Urgent (default)"
    assert ticket.first_response_due_at == at(0, 11)  # from when it was opened, 24/7
    assert ticket.resolution_due_at == at(0, 14)
    billing = services.create_sla_policy(
        actor=lead,
        name="Urgent billing",
        position=5,
        priority="urgent",
        category=categories["billing"],
        first_response_minutes=30,
        resolution_minutes=120,
    )
    with time_machine.travel(at(0, 10, 40), tick=False):
        services.update_ticket(actor=agent, ticket=ticket, category=categories["billing"])
    ticket.refresh_from_db()
    assert ticket.sla_policy == billing
    assert ticket.first_response_due_at == at(0, 10, 30)
    # Already past the new first-response due time: the scan marks it.
    with time_machine.travel(at(0, 10, 41), tick=False):
        services.run_sla_scan()
    ticket.refresh_from_db()
    assert ticket.sla_first_response_breached and ticket.sla_breached
    # Back to normal priority: the due time is ahead again, the breach mark goes.
    with time_machine.travel(at(0, 10, 45), tick=False):
        services.update_ticket(actor=agent, ticket=ticket, priority="normal")
    ticket.refresh_from_db()
    assert ticket.sla_policy == policy
    assert not ticket.sla_breached and ticket.first_response_due_at == at(0, 12)


def test_tier_and_category_narrow_policies_first_match_wins(
    make_ticket, lead, categories, customer, other_customer, policy
):
    services.set_customer_tier(actor=lead, customer=customer, tier="enterprise")
    enterprise = services.create_sla_policy(
        actor=lead,
        name="Enterprise normal",
        position=1,
        priority="normal",
        customer_tier="enterprise",
        first_response_minutes=30,
        resolution_minutes=240,
    )
    services.create_sla_policy(
        actor=lead,
        name="Enterprise billing (never reached)",
        position=2,
        priority="normal",
        customer_tier="enterprise",
        category=categories["billing"],
        first_response_minutes=15,
        resolution_minutes=60,
    )
    mine = open_ticket(make_ticket, category="billing")
    theirs = open_ticket(make_ticket, requester=other_customer)
    assert mine.sla_policy == enterprise and mine.first_response_due_at == at(0, 10, 30)
    assert theirs.sla_policy == policy


def test_merged_duplicate_stops_its_clocks_and_the_target_takes_its_answer(
    make_ticket, policy, agent
):
    original = open_ticket(make_ticket)
    duplicate = open_ticket(make_ticket, when=at(0, 10, 5))
    with time_machine.travel(at(0, 10, 20), tick=False):
        services.add_comment(actor=agent, ticket=duplicate, body="Answered here.")
        services.merge_tickets(actor=agent, source=duplicate, target=original)
    assert targets(duplicate) == [
        ("first_response", 1, "met", 6300),
        ("resolution", 1, "cancelled", None),
    ]
    assert targets(original)[0] == ("first_response", 1, "met", 6000)


def test_policy_and_calendar_services_validate_and_audit(lead, agent, office, categories):
    with pytest.raises(PermissionDenied):
        services.create_sla_policy(
            actor=agent, name="x", priority="low", first_response_minutes=1, resolution_minutes=2
        )
    with pytest.raises(ValidationError, match="cannot be shorter"):
        services.create_sla_policy(
            actor=lead, name="x", priority="low", first_response_minutes=60, resolution_minutes=30
        )
    with pytest.raises(ValidationError, match="Unknown priority"):
        services.create_sla_policy(
            actor=lead, name="x", priority="asap", first_response_minutes=1, resolution_minutes=2
        )
    with pytest.raises(ValidationError, match="at least one weekday"):
        services.create_calendar(actor=lead, name="Never", time_zone="UTC", weekly_hours=[[]] * 7)
    with pytest.raises(ValidationError, match="already exists"):
        services.create_calendar(
            actor=lead, name="berlin OFFICE", time_zone="UTC", weekly_hours=OFFICE_HOURS
        )
    before = office.updated_at
    services.add_calendar_holiday(
        actor=lead, calendar=office, date=dt.date(2025, 6, 17), name="Offsite"
    )
    office.refresh_from_db()
    assert office.updated_at > before
    schedule = sla.schedule_for(office)
    assert dt.date(2025, 6, 17) in schedule.closed_dates
    with pytest.raises(ValidationError, match="already a closed day"):
        services.add_calendar_holiday(actor=lead, calendar=office, date=dt.date(2025, 6, 17))
    events = set(
        AuditEntry.objects.filter(event__startswith="business_calendar.").values_list(
            "event", flat=True
        )
    )
    assert events == {"business_calendar.created", "business_calendar.holiday_added"}


def test_reopening_a_ticket_closed_without_an_answer_asks_no_first_response_again(
    make_ticket, policy, agent, lead
):
    ticket = open_ticket(make_ticket)
    with time_machine.travel(at(0, 11), tick=False):  # resolved without a public reply
        services.resolve(actor=agent, ticket=ticket)
    assert targets(ticket)[0] == ("first_response", 1, "met", 3600)
    with time_machine.travel(at(2, 10), tick=False):
        services.reopen(actor=agent, ticket=ticket)
    ticket.refresh_from_db()
    assert ticket.first_response_due_at is None and ticket.first_responded_at is None
    assert ticket.resolution_due_at == at(3, 10) and ticket.next_due_at == at(3, 10)
    # Long past the old first-response due time: nothing is marked.
    with time_machine.travel(at(2, 16), tick=False):
        counts = services.run_sla_scan()
    assert counts["first_response_breach"] == 0
    ticket.refresh_from_db()
    assert not ticket.sla_breached
    # Once no policy matches any more, a reopened ticket runs no clock at all.
    SLAPolicy.objects.all().delete()
    with time_machine.travel(at(2, 17), tick=False):
        services.resolve(actor=agent, ticket=ticket)
        services.reopen(actor=agent, ticket=ticket)
    ticket.refresh_from_db()
    assert ticket.sla_policy is None and ticket.next_due_at is None
    assert targets(ticket)[-1][:3] == ("resolution", 2, "met")
