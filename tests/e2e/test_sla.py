"""SLA countdowns in Chromium with a frozen browser clock (Playwright's ``page.clock``): the
queue row and the ticket header tick without the server, turn amber at the warning (80%) and
red past the deadline; a paused ticket stands still. Then a lead's SLA pages: the report with
its Plotly charts, policies, calendars, and agents with routing. Screenshots of each page go
to artifacts/screenshots/."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from adminsite import roles
from tests.factories import PASSWORD, CustomerFactory, StaffFactory
from tickets import services
from tickets.models import Category

pytestmark = pytest.mark.django_db(transaction=True)

CATEGORIES = ["email_sync", "billing", "account", "bug", "feature_request", "other"]


def categories() -> dict[str, Category]:
    return {
        slug: Category.objects.get_or_create(
            slug=slug,
            defaults={"name": slug.replace("_", " ").capitalize(), "position": n * 10},
        )[0]
        for n, slug in enumerate(CATEGORIES, start=1)
    }


def default_policies(lead) -> None:
    """The seeded default policies (a transactional test before this one flushed them)."""
    for priority, first, resolution in (
        ("urgent", 60, 240),
        ("high", 240, 1440),
        ("normal", 480, 4320),
        ("low", 1440, 7200),
    ):
        services.create_sla_policy(
            actor=lead,
            name=f"{priority.capitalize()} (default)",
            position=1000,
            priority=priority,
            first_response_minutes=first,
            resolution_minutes=resolution,
        )


@pytest.fixture
def sla_data():
    found = categories()
    lead = StaffFactory(
        username="lead.e2e", role=roles.SUPPORT_LEAD, first_name="Priya", last_name="Shah"
    )
    default_policies(lead)
    agent = StaffFactory(
        username="sam.e2e", role=roles.SUPPORT_AGENT, first_name="Sam", last_name="Carter"
    )
    customer = CustomerFactory(username="nora.e2e", first_name="Nora", last_name="Lindqvist")
    services.set_customer_tier(actor=lead, customer=customer, tier="enterprise")
    # Whole seconds, so the countdown's text at a given browser time is exact.
    opened = timezone.now().replace(microsecond=0)
    traveller = time_machine.travel(opened, tick=False)
    traveller.start()
    ticket = services.create_ticket(
        actor=customer,
        requester=customer,
        subject="Outlook calendar invites no longer sync",
        description="Since this morning invites from Outlook do not show up.",
        category=found["email_sync"],
        priority="urgent",
    )
    services.assign_ticket(actor=agent, ticket=ticket, assignee=agent)
    waiting = services.create_ticket(
        actor=customer,
        requester=customer,
        subject="Export of the mailbox to PST",
        description="Which format do I need?",
        category=found["other"],
        priority="urgent",
    )
    services.assign_ticket(actor=agent, ticket=waiting, assignee=agent)
    services.change_status(actor=agent, ticket=waiting, status="pending")
    traveller.stop()
    ticket.refresh_from_db()
    return {"lead": lead, "agent": agent, "ticket": ticket, "waiting": waiting}


def test_countdowns_tick_and_change_colour_with_a_frozen_clock(browsing, screenshot, sla_data):
    ticket, waiting = sla_data["ticket"], sla_data["waiting"]
    due = ticket.first_response_due_at  # urgent: one hour after opening; warning at 48 min
    session = browsing()
    page = session.new_page()
    page.clock.install(time=due - dt.timedelta(minutes=30))
    page.clock.set_fixed_time(due - dt.timedelta(minutes=30))
    session.page = page
    session.login("sam.e2e", PASSWORD)
    page.goto("/admin/support/?ordering=nextDueAt")

    cell = page.locator(f'tr[data-ticket="{ticket.pk}"] .col-sla .sla')
    expect(cell.locator("[data-sla-text]")).to_have_text("30m 00s left")
    expect(cell).to_have_class(re.compile(r"\bsla-ok\b"))
    paused = page.locator(f'tr[data-ticket="{waiting.pk}"] .col-sla .sla')
    expect(paused).to_have_text("Paused")
    expect(paused).to_have_attribute("data-sla-state", "paused")

    # Ten minutes before the deadline: past 80%, amber, still counting down every second.
    page.clock.set_fixed_time(due - dt.timedelta(minutes=10))
    expect(cell.locator("[data-sla-text]")).to_have_text("10m 00s left")
    expect(cell).to_have_class(re.compile(r"\bsla-warning\b"))
    page.clock.set_fixed_time(due - dt.timedelta(minutes=9, seconds=58))
    expect(cell.locator("[data-sla-text]")).to_have_text("9m 58s left")
    screenshot(page, "sla-queue-countdown-warning", full_page=False)

    # Past due: red, counting up.
    page.clock.set_fixed_time(due + dt.timedelta(minutes=2, seconds=5))
    expect(cell.locator("[data-sla-text]")).to_have_text("2m 05s over")
    expect(cell).to_have_class(re.compile(r"\bsla-danger\b"))

    # The ticket page's header: both clocks tick; the enterprise tier is in the customer card.
    page.clock.set_fixed_time(due - dt.timedelta(minutes=45))
    page.goto(f"/admin/support/{ticket.pk}/")
    first = page.get_by_test_id("sla-first_response")
    resolution = page.get_by_test_id("sla-resolution")
    expect(first.locator("[data-sla-text]")).to_have_text("45m 00s left")
    expect(first).to_have_class(re.compile(r"\bsla-ok\b"))
    expect(resolution.locator("[data-sla-text]")).to_have_text("3h 45m left")
    expect(page.get_by_test_id("customer-tier")).to_have_text("Enterprise")
    expect(
        page.get_by_test_id("sla-history").locator('[data-target="first_response-1"]')
    ).to_contain_text("Running")
    screenshot(page, "sla-ticket-countdown", full_page=False)
    page.clock.set_fixed_time(due + dt.timedelta(hours=1))
    expect(first.locator("[data-sla-text]")).to_have_text("1h 00m over")
    expect(first).to_have_class(re.compile(r"\bsla-danger\b"))
    expect(resolution).to_have_class(re.compile(r"\bsla-ok\b"))


def test_lead_pages_report_policies_calendars_agents(browsing, screenshot, sla_data):
    agent = sla_data["agent"]
    call_command("seed_demo", "--tickets", "300", "--no-progress", verbosity=0)
    found = categories()
    # A fortnight of answered tickets, a few of them late, for the charts.
    customer = CustomerFactory()
    now = timezone.now()
    for n in range(12):
        opened = now - dt.timedelta(days=1 + n, hours=n % 5)
        with time_machine.travel(opened, tick=False):
            ticket = services.create_ticket(
                actor=customer,
                requester=customer,
                subject=f"Report sample {n}",
                description="Sample",
                category=found[CATEGORIES[n % 4]],
                priority=["urgent", "high", "normal"][n % 3],
            )
            services.assign_ticket(actor=agent, ticket=ticket, assignee=agent)
        late = n % 4 == 0
        with time_machine.travel(opened + dt.timedelta(hours=9 if late else 0.3), tick=False):
            services.add_comment(actor=agent, ticket=ticket, body="On it.")
            services.resolve(actor=agent, ticket=ticket)

    session = browsing()
    page = session.login("lead.e2e", PASSWORD)
    page.goto("/admin/support/sla/")
    expect(page.locator('[data-sla-chart="priority"] .main-svg').first).to_be_visible()
    expect(page.locator('[data-sla-chart="week"]')).to_have_attribute(
        "data-drawn", re.compile(r"[1-9]")
    )
    expect(page.get_by_test_id("table-agent")).to_contain_text("Sam Carter")
    screenshot(page, "sla-report", full_page=True)

    page.goto("/admin/support/sla/policies/")
    page.fill("#p-name", "Enterprise urgent")
    page.select_option("#p-priority", "urgent")
    page.fill("#p-position", "5")
    page.select_option("#p-tier", "enterprise")
    page.fill("#p-first", "30")
    page.fill("#p-resolution", "120")
    with page.expect_navigation():
        page.click("text=Add policy")
    expect(page.get_by_test_id("policies")).to_contain_text("Enterprise urgent")
    screenshot(page, "sla-policies", full_page=True)

    page.goto("/admin/support/sla/calendars/")
    page.fill("#c-name", "Berlin office")
    page.fill("#c-zone", "Europe/Berlin")
    page.fill("#c-country", "DE")
    with page.expect_navigation():
        page.click("text=Add calendar")
    expect(page.get_by_test_id("public-holidays")).to_be_visible()
    page.fill("#h-date", "2030-12-24")
    page.fill("#h-name", "Christmas Eve")
    with page.expect_navigation():
        page.click("text=Close this day")
    expect(page.get_by_test_id("custom-holidays")).to_contain_text("Christmas Eve")
    screenshot(page, "sla-calendar", full_page=True)
    page.goto("/admin/support/sla/calendars/")
    screenshot(page, "sla-calendars", full_page=True)

    page.goto("/admin/support/agents/")
    page.fill("#team-name", "Sync specialists")
    page.select_option("#team-new-members", [str(agent.pk)])
    with page.expect_navigation():
        page.click("text=Add team")
    row = page.locator('tr[data-category="email_sync"]')
    row.locator("select[name=strategy]").select_option("round_robin")
    row.locator("select[name=team]").select_option(label="Sync specialists")
    with page.expect_navigation():
        row.locator("button").click()
    expect(page.locator(".message")).to_contain_text("Saved routing of Email sync")
    expect(page.get_by_test_id("agent-loads")).to_contain_text("Sam Carter")
    screenshot(page, "sla-agents", full_page=True)

    # A ticket of Sam's passes 80% of its first-response time: the scan warns him.
    with time_machine.travel(now - dt.timedelta(minutes=50), tick=False):
        warned = services.create_ticket(
            actor=customer,
            requester=customer,
            subject="Shared mailbox shows no new mail",
            description="Nothing since 9:00.",
            category=found["email_sync"],
            priority="urgent",
        )
        services.assign_ticket(actor=agent, ticket=warned, assignee=agent)
    services.run_sla_scan()
    services.send_due_sla_alerts()

    # An agent goes away from the queue's header; the notifications page lists their alerts.
    agent_session = browsing()
    agent_page = agent_session.login("sam.e2e", PASSWORD)
    agent_page.goto("/admin/support/")
    toggle = agent_page.get_by_test_id("availability-toggle")
    expect(toggle).to_have_text("Available")
    toggle.click()
    expect(agent_page.get_by_test_id("availability-toggle")).to_have_text("Away")
    screenshot(agent_page, "sla-queue-agent-away", full_page=False)
    expect(agent_page.get_by_test_id("unread-count")).to_have_text("1")
    agent_page.get_by_test_id("notifications-link").click()
    expect(agent_page.get_by_test_id("notifications")).to_contain_text(
        f"SLA warning: first response of #{warned.ticket_number}"
    )
    screenshot(agent_page, "sla-notifications", full_page=False)
