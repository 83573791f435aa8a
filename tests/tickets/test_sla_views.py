"""Console pages of the SLA engine and assignment: the report (charts' data, table, CSV),
policies, calendars, agents and routing, availability, notifications, and the countdowns on
the queue and ticket pages. Query counts are asserted on every list."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re

import pytest
import time_machine
from django.utils import timezone

from tests.factories import StaffFactory
from tests.tickets.helpers import run_with_tasks
from tickets import services
from tickets.models import (
    AgentProfile,
    BusinessCalendar,
    CalendarHoliday,
    SLAPolicy,
    SupportNotification,
)

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}


def page(response) -> str:
    return response.content.decode()


@pytest.fixture
def history(make_ticket, agent, agent2):
    """Three answered urgent tickets over the last days: two on time, one late."""
    now = timezone.now()
    made = []
    for n, (who, late) in enumerate([(agent, False), (agent2, False), (agent, True)]):
        opened = now - dt.timedelta(days=3, hours=n)
        with time_machine.travel(opened, tick=False):
            ticket = make_ticket(subject=f"History {n}", priority="urgent", assignee=who)
        answer = opened + dt.timedelta(minutes=90 if late else 20)
        with time_machine.travel(answer, tick=False):
            services.add_comment(actor=who, ticket=ticket, body="Answer")
        with time_machine.travel(answer + dt.timedelta(minutes=30), tick=False):
            services.resolve(actor=who, ticket=ticket)
        made.append(ticket)
    return made


def test_report_shows_compliance_per_priority_agent_category_and_week(
    client, lead, history, django_assert_max_num_queries
):
    client.force_login(lead)
    with django_assert_max_num_queries(10):
        response = client.get("/admin/support/sla/")
    assert response.status_code == 200
    html = page(response)
    charts = json.loads(
        re.search(
            r'<script id="sla-report-data" type="application/json">(.*?)</script>', html, re.S
        ).group(1)
    )
    by_name = {chart["name"]: chart for chart in charts}
    assert set(by_name) == {"priority", "agent", "category", "week"}
    assert by_name["priority"]["labels"] == ["Urgent"]
    # First response: 2 of 3 on time; resolution (4 h): all 3 on time.
    assert by_name["priority"]["first"] == [66.7]
    assert by_name["priority"]["resolution"] == [100.0]
    assert sorted(by_name["agent"]["labels"]) == ["Lena Fischer", "Sam Carter"]
    assert 'data-sla-chart="week"' in html and "plotly/plotly.min.js" in html
    assert "<script>" not in html  # no inline script (CSP)
    assert re.search(r"Overall compliance</div><div class=\"stat-value\">83.3%", html)


def test_report_csv_export(client, lead, history):
    client.force_login(lead)
    response = client.get("/admin/support/sla/?weeks=4&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    total = next(r for r in rows if r["dimension"] == "total")
    assert (total["first_response_met"], total["first_response_total"]) == ("2", "3")
    assert total["resolution_compliance_pct"] == "100.0"
    sam = next(r for r in rows if r["dimension"] == "agent" and r["group"] == "Sam Carter")
    assert sam["first_response_compliance_pct"] == "50.0"
    assert float(sam["avg_overrun_hours"]) == pytest.approx(0.5)


def test_report_refuses_bad_parameters(client, lead):
    client.force_login(lead)
    response = client.get("/admin/support/sla/?weeks=9")
    assert response.status_code == 400
    assert "weeks: choose one of 4, 8, 12, 26, 52" in page(response)
    assert client.get("/admin/support/sla/?format=xlsx").status_code == 400


def test_lead_adds_edits_and_deletes_a_policy(client, lead, categories):
    client.force_login(lead)
    data = {
        "name": "VIP billing",
        "position": "3",
        "priority": "high",
        "category": "billing",
        "customer_tier": "enterprise",
        "first_response_minutes": "30",
        "resolution_minutes": "240",
        "calendar": "",
        "is_active": "on",
    }
    response = client.post("/admin/support/sla/policies/", data)
    assert response.status_code == 303
    policy = SLAPolicy.objects.get(name="VIP billing")
    assert policy.category == categories["billing"] and policy.customer_tier == "enterprise"
    listing = page(client.get("/admin/support/sla/policies/"))
    assert "VIP billing" in listing and "4h" in listing
    bad = client.post(
        f"/admin/support/sla/policies/{policy.pk}/", {**data, "resolution_minutes": "10"}
    )
    assert bad.status_code == 400
    assert "cannot be shorter than the first response target" in page(bad)
    policy.refresh_from_db()
    assert policy.resolution_minutes == 240
    unknown = client.post("/admin/support/sla/policies/", {**data, "priority": "asap"})
    assert unknown.status_code == 400 and "Unknown priority" in page(unknown)
    assert (
        client.post(
            f"/admin/support/sla/policies/{policy.pk}/", {**data, "first_response_minutes": "45"}
        ).status_code
        == 303
    )
    policy.refresh_from_db()
    assert policy.first_response_minutes == 45
    assert client.post(f"/admin/support/sla/policies/{policy.pk}/delete/").status_code == 303
    assert not SLAPolicy.objects.filter(pk=policy.pk).exists()


def test_policy_list_query_count_does_not_grow(client, lead, django_assert_max_num_queries):
    client.force_login(lead)
    for n in range(15):
        services.create_sla_policy(
            actor=lead,
            name=f"P{n}",
            priority="low",
            first_response_minutes=10,
            resolution_minutes=20,
        )
    with django_assert_max_num_queries(8):
        assert client.get("/admin/support/sla/policies/").status_code == 200


def test_lead_adds_a_calendar_with_hours_and_a_closed_day(client, lead):
    client.force_login(lead)
    days = {f"day_{n}": "09:00-17:00" for n in range(5)}
    response = client.post(
        "/admin/support/sla/calendars/",
        {"name": "Berlin office", "time_zone": "Europe/Berlin", "holiday_country": "de", **days},
    )
    assert response.status_code == 303
    calendar = BusinessCalendar.objects.get(name="Berlin office")
    assert calendar.weekly_hours == [[[540, 1020]]] * 5 + [[], []]
    assert calendar.holiday_country == "DE"
    detail = page(client.get(f"/admin/support/sla/calendars/{calendar.pk}/"))
    assert "Next public holidays" in detail
    assert (
        client.post(
            f"/admin/support/sla/calendars/{calendar.pk}/holidays/",
            {"date": "2030-05-02", "name": "Offsite"},
        ).status_code
        == 303
    )
    assert CalendarHoliday.objects.filter(calendar=calendar, date=dt.date(2030, 5, 2)).exists()
    bad = client.post(
        f"/admin/support/sla/calendars/{calendar.pk}/",
        {"name": "Berlin office", "time_zone": "Europe/Berlin", "day_0": "17:00-09:00"},
    )
    assert bad.status_code == 400 and "Monday: '17:00-09:00' ends before it starts." in page(
        bad
    ).replace("&#x27;", "'")
    zone = client.post(
        "/admin/support/sla/calendars/", {"name": "Mars", "time_zone": "Mars/Base", **days}
    )
    assert zone.status_code == 400 and "Unknown time zone" in page(zone)
    listing = page(client.get("/admin/support/sla/calendars/"))
    assert "Mon 09:00-17:00" in listing and "Sun closed" in listing


def test_agents_page_shows_load_and_lets_leads_route(
    client, lead, agent, agent2, make_ticket, categories, django_assert_max_num_queries
):
    make_ticket(assignee=agent)
    make_ticket(assignee=agent)
    client.force_login(lead)
    for _ in range(6):
        StaffFactory()
    with django_assert_max_num_queries(14):
        response = client.get("/admin/support/agents/")
    html = page(response)
    row = re.search(rf'<tr data-agent="{agent.pk}">.*?</tr>', html, re.S).group(0)
    assert "2 / 25" in row and "Available" in row
    assert (
        client.post(f"/admin/support/agents/{agent.pk}/", {"max_open_tickets": "2"}).status_code
        == 303
    )
    profile = AgentProfile.objects.get(user=agent)
    assert profile.max_open_tickets == 2 and not profile.is_available
    assert "at cap" in page(client.get("/admin/support/agents/"))
    assert (
        client.post(
            "/admin/support/agents/teams/", {"name": "Sync", "members": [agent.pk, agent2.pk]}
        ).status_code
        == 303
    )
    team_id = re.search(r'data-team="(\d+)"', page(client.get("/admin/support/agents/"))).group(1)
    no_team = client.post(
        "/admin/support/agents/routing/", {"category": "bug", "strategy": "round_robin", "team": ""}
    )
    assert no_team.status_code == 400 and "needs a team" in page(no_team)
    assert (
        client.post(
            "/admin/support/agents/routing/",
            {"category": "bug", "strategy": "least_load", "team": team_id},
        ).status_code
        == 303
    )
    categories["bug"].refresh_from_db()
    assert categories["bug"].assignment_strategy == "least_load"
    assert make_ticket(category="bug").assignee == agent2  # agent is away


def test_agent_toggles_own_availability_and_reads_notifications(
    client, agent, make_ticket, django_capture_on_commit_callbacks
):
    client.force_login(agent)
    fragment = page(client.get("/admin/support/me/", headers=HX))
    assert "Available" in fragment and "notif-count" not in fragment
    response = client.post("/admin/support/me/availability/", {"available": "0"}, headers=HX)
    assert response.status_code == 200 and ">Away" in page(response).replace("</span>", "")
    assert not AgentProfile.objects.get(user=agent).is_available
    bad = client.post("/admin/support/me/availability/", {"available": "maybe"}, headers=HX)
    assert bad.status_code == 400 and "available=1" in page(bad)
    # A warning on one of their tickets.
    now = timezone.now()
    with time_machine.travel(now - dt.timedelta(minutes=50), tick=False):
        ticket = make_ticket(priority="urgent", assignee=agent)
    run_with_tasks(django_capture_on_commit_callbacks, services.run_sla_scan)
    fragment = page(client.get("/admin/support/me/", headers=HX))
    assert re.search(r'data-testid="unread-count">1<', fragment)
    listing = page(client.get("/admin/support/notifications/"))
    assert f"#{ticket.ticket_number}" in listing and "Warning" in listing
    assert client.post("/admin/support/notifications/read/").status_code == 303
    assert not SupportNotification.objects.filter(user=agent, read_at__isnull=True).exists()


def test_queue_and_ticket_page_carry_the_countdowns(
    client, agent, lead, customer, make_ticket, django_assert_max_num_queries
):
    services.set_customer_tier(actor=lead, customer=customer, tier="enterprise")
    ticket = make_ticket(priority="urgent", assignee=agent)
    pending = make_ticket(subject="Waiting on the customer", assignee=agent, status="pending")
    client.force_login(agent)
    queue = page(client.get("/admin/support/"))
    row = re.search(rf'<tr data-ticket="{ticket.pk}".*?</tr>', queue, re.S).group(0)
    due = ticket.first_response_due_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    assert f'data-sla-due="{due}"' in row and 'data-sla-state="running"' in row
    assert "data-sla-warn=" in row and "tickets/sla.js" in queue
    paused = re.search(rf'<tr data-ticket="{pending.pk}".*?</tr>', queue, re.S).group(0)
    assert 'data-sla-state="paused"' in paused and ">Paused<" in paused
    detail = page(client.get(f"/admin/support/{ticket.pk}/"))
    assert 'data-testid="sla-first_response"' in detail and 'data-testid="sla-resolution"' in detail
    assert (
        'data-testid="customer-tier"><span class="tier-chip tier-enterprise">Enterprise' in detail
    )
    with django_assert_max_num_queries(6):
        part = client.get(f"/admin/support/{ticket.pk}/?part=sla", headers=HX)
    assert part.status_code == 200
    assert 'data-target="first_response-1"' in page(part) and "Running" in page(part)
