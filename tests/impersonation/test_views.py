"""The console at /admin/impersonation/: sessions with filters, a session's page with its
pages and trail, ending a session, the dashboard panel; who may open what, and query counts."""

from __future__ import annotations

from datetime import timedelta
from html import unescape

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEntry
from impersonation.models import EndReason, ImpersonationSession
from tests.factories import CustomerFactory, StaffFactory
from tests.impersonation.helpers import start, stop
from tests.roles import URL_MATRIX, assert_access_matrix

pytestmark = pytest.mark.django_db


def html(response) -> str:
    return unescape(response.content.decode())


def make_sessions(lead, count: int, *, reason: str = "Checking the sync settings") -> list:
    """``count`` ended sessions of ``lead`` with as many customers, through the real views."""
    client = Client()
    client.force_login(lead)
    made = []
    for _ in range(count):
        customer = CustomerFactory()
        start(client, customer, reason=reason)
        client.get("/help/tickets/")
        stop(client)
        made.append(ImpersonationSession.objects.get(customer=customer))
    return made


@pytest.mark.parametrize(
    "access", [row for row in URL_MATRIX if "/impersonation" in row.url], ids=str
)
def test_access_matrix(client, access):
    assert_access_matrix(
        client,
        access.url,
        access.allowed,
        method=access.method,
        status=access.status,
        data=access.data,
        expect=access.expect,
    )


def test_the_sidebar_shows_impersonation_to_lead_and_admin(client, lead, agent):
    client.force_login(lead)
    assert 'href="/admin/impersonation/"' in html(client.get("/admin/"))
    client.force_login(agent)
    assert 'href="/admin/impersonation/"' not in html(client.get("/admin/"))


# --- the list ----------------------------------------------------------------------------------


def test_list_shows_active_and_past_sessions_and_the_start_form(client, lead, admin_user, customer):
    past = make_sessions(lead, 2)
    running = Client()
    running.force_login(admin_user)
    start(running, customer, reason="Billing page shows the wrong plan")

    client.force_login(lead)
    page = html(client.get("/admin/impersonation/"))
    active_card = page.split('data-testid="active-sessions"', 1)[1].split("</section>", 1)[0]
    assert "Billing page shows the wrong plan" in active_card
    assert "Checking the sync settings" not in active_card
    table = page.split('data-testid="session-table"', 1)[1]
    for session in past:
        assert f'data-session="{session.pk}"' in table
    assert 'data-testid="start-form"' in page
    assert 'action="/admin/impersonation/start"' in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=active", ["running"]),
        ("status=ended", ["stopped", "expired"]),
        ("end_reason=expired", ["expired"]),
        ("staff=ada", ["running"]),
        ("customer=dora", ["expired"]),
        ("customer=dora@example.com", ["expired"]),
        ("q=invoice", ["stopped"]),
        ("date_from=2020-01-01&date_to=2020-01-31", []),
    ],
)
def test_filters(client, lead, admin_user, query, expected):
    found = {}
    staff_client = Client()
    staff_client.force_login(lead)
    start(staff_client, CustomerFactory(), reason="Invoice totals look wrong")
    stop(staff_client)
    found["stopped"] = ImpersonationSession.objects.get()
    dora = CustomerFactory(username="dora", email="dora@example.com")
    start(staff_client, dora)
    found["expired"] = ImpersonationSession.objects.get(customer=dora)
    ImpersonationSession.objects.filter(pk=found["expired"].pk).update(
        expires_at=timezone.now() - timedelta(seconds=1),
        started_at=timezone.now() - timedelta(minutes=31),
    )
    staff_client.get("/help/tickets/")  # the server notices the limit
    admin = Client()
    admin.force_login(admin_user)
    start(admin, CustomerFactory())
    found["running"] = ImpersonationSession.objects.get(impersonator=admin_user)

    client.force_login(lead)
    response = client.get(f"/admin/impersonation/?{query}")
    assert response.status_code == 200
    table = html(response).split('id="session-results"', 1)[1]
    shown = {name for name, session in found.items() if f'data-session="{session.pk}"' in table}
    assert shown == set(expected)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("staff=nobody", "There is no staff member 'nobody'"),
        ("status=maybe", "Select a valid choice"),
        ("date_from=2026-02-10&date_to=2026-02-01", "The end date is before the start date"),
        ("date_from=yesterday", "Enter a valid date"),
    ],
)
def test_bad_filters_are_a_400_naming_the_problem(client, lead, query, message):
    client.force_login(lead)
    response = client.get(f"/admin/impersonation/?{query}")
    assert response.status_code == 400
    assert message in html(response)


def test_htmx_gets_the_results_partial(client, lead):
    make_sessions(lead, 1)
    client.force_login(lead)
    response = client.get("/admin/impersonation/?status=ended", HTTP_HX_REQUEST="true")
    page = html(response)
    assert page.lstrip().startswith('<section id="session-results"')
    assert "<html" not in page


def test_the_list_runs_a_fixed_number_of_queries(
    client, lead, admin_user, django_assert_max_num_queries
):
    make_sessions(lead, 2)
    client.force_login(admin_user)
    client.get("/admin/impersonation/")
    with CaptureQueriesContext(connection) as few:
        client.get("/admin/impersonation/")
    baseline = len(few)  # read now: every request clears the connection's query log
    assert baseline <= 10
    make_sessions(lead, 8)
    for customer in CustomerFactory.create_batch(3):
        other = Client()
        other.force_login(StaffFactory(role="Support Lead"))
        start(other, customer)
    with django_assert_max_num_queries(baseline):
        response = client.get("/admin/impersonation/")
    assert html(response).count("data-session=") == 10 + 3 + 3  # table + active card


# --- a session's page --------------------------------------------------------------------------


def test_the_session_page_shows_record_pages_and_trail(client, lead, customer, ticket):
    staff = Client()
    staff.force_login(lead)
    start(staff, customer, ticket=ticket, headers={"HTTP_USER_AGENT": "Firefox/140"})
    staff.get(f"/help/tickets/{ticket.pk}/")
    staff.get("/shop/checkout/")
    stop(staff)
    session = ImpersonationSession.objects.get()

    client.force_login(lead)
    response = client.get(f"/admin/impersonation/{session.pk}/")
    assert response.status_code == 200
    page = html(response)
    assert session.reason in page
    assert f"#{ticket.ticket_number}" in page
    assert "Firefox/140" in page
    pages = page.split('data-testid="session-pages"', 1)[1].split("</section>", 1)[0]
    assert f"/help/tickets/{ticket.pk}/" in pages
    assert "/shop/checkout/" in pages and "blocked" in pages
    trail = page.split('data-testid="session-trail"', 1)[1].split("</section>", 1)[0]
    for event in (
        "impersonation.started",
        "auth.login",
        "impersonation.action_blocked",
        "impersonation.ended",
    ):
        assert event in trail, event
    assert "as customer</span> by Lee Lead (lee)" in trail
    link = f"/admin/audit/?target_type=impersonation.impersonationsession&target_id={session.pk}"
    assert f'href="{link}"' in response.content.decode().replace("&amp;", "&")
    # The audit trail viewer finds the session's own entries by that link.
    viewer = html(client.get(link))
    assert "impersonation.started" in viewer and "impersonation.ended" in viewer


def test_the_trail_of_one_session_leaves_out_the_next_one(client, lead, customer, other_customer):
    staff = Client()
    staff.force_login(lead)
    start(staff, customer)
    stop(staff)
    start(staff, other_customer)
    staff.get("/shop/checkout/")
    first, second = ImpersonationSession.objects.order_by("started_at")
    second_blocked = AuditEntry.objects.get(event="impersonation.action_blocked")
    client.force_login(lead)
    assert f'data-entry="{second_blocked.pk}"' not in html(
        client.get(f"/admin/impersonation/{first.pk}/")
    )
    assert f'data-entry="{second_blocked.pk}"' in html(
        client.get(f"/admin/impersonation/{second.pk}/")
    )


def test_the_session_page_runs_a_fixed_number_of_queries(
    client, lead, customer, django_assert_max_num_queries
):
    staff = Client()
    staff.force_login(lead)
    start(staff, customer)
    for _ in range(3):
        staff.get("/help/tickets/")
    session = ImpersonationSession.objects.get()
    client.force_login(lead)
    client.get(f"/admin/impersonation/{session.pk}/")
    with CaptureQueriesContext(connection) as few:
        client.get(f"/admin/impersonation/{session.pk}/")
    baseline = len(few)  # read now: every request clears the connection's query log
    assert baseline <= 10
    for _ in range(20):
        staff.get("/help/tickets/")
        staff.get("/shop/checkout/")
    with django_assert_max_num_queries(baseline):
        page = html(client.get(f"/admin/impersonation/{session.pk}/"))
    assert page.count("data-blocked") == 20


# --- ending a session from the console ---------------------------------------------------------


def test_an_admin_forces_a_leads_session_to_end(client, lead, admin_user, customer):
    staff = Client()
    staff.force_login(lead)
    start(staff, customer)
    session = ImpersonationSession.objects.get()
    client.force_login(admin_user)
    assert 'data-testid="end-session"' in html(client.get(f"/admin/impersonation/{session.pk}/"))
    response = client.post(f"/admin/impersonation/{session.pk}/end")
    assert response.status_code == 303
    session.refresh_from_db()
    assert (session.end_reason, session.ended_by) == (EndReason.FORCED, admin_user)
    entry = AuditEntry.objects.get(event="impersonation.ended")
    assert entry.actor_id == admin_user.pk and entry.additional_data["reason"] == "forced"
    # Again: nothing more happens, and it says so.
    page = html(client.post(f"/admin/impersonation/{session.pk}/end", follow=True))
    assert "already ended" in page
    assert AuditEntry.objects.filter(event="impersonation.ended").count() == 1


def test_a_lead_cannot_force_anothers_session_but_may_end_their_own(
    client, lead, customer, other_customer
):
    other_lead = StaffFactory(role="Support Lead")
    theirs, mine = Client(), Client()
    theirs.force_login(other_lead)
    start(theirs, customer)
    their_session = ImpersonationSession.objects.get()
    client.force_login(lead)
    assert 'data-testid="end-session"' not in html(
        client.get(f"/admin/impersonation/{their_session.pk}/")
    )
    assert client.post(f"/admin/impersonation/{their_session.pk}/end").status_code == 403
    their_session.refresh_from_db()
    assert their_session.is_active

    # A session left running in another browser is ended from its page by its own lead.
    mine.force_login(lead)
    start(mine, other_customer)
    my_session = ImpersonationSession.objects.get(impersonator=lead)
    response = client.post(f"/admin/impersonation/{my_session.pk}/end")
    assert response.status_code == 303
    my_session.refresh_from_db()
    assert (my_session.end_reason, my_session.ended_by) == (EndReason.STOPPED, lead)
    assert mine.get("/help/tickets/").status_code == 303  # that browser is sent back


def test_force_end_is_post_only(client, admin_user, lead, customer):
    staff = Client()
    staff.force_login(lead)
    start(staff, customer)
    session = ImpersonationSession.objects.get()
    client.force_login(admin_user)
    assert client.get(f"/admin/impersonation/{session.pk}/end").status_code == 405
    session.refresh_from_db()
    assert session.is_active


# --- the dashboard panel -----------------------------------------------------------------------


def test_the_dashboard_panel_counts_and_lists_running_sessions(
    client, lead, admin_user, customer, django_assert_max_num_queries
):
    client.force_login(admin_user)
    panel = html(client.get("/admin/panels/impersonation/"))
    assert "0 active" in panel and "nobody is impersonating" in panel
    staff = Client()
    staff.force_login(lead)
    start(staff, customer, reason="Looking at the folder settings")
    with django_assert_max_num_queries(8):
        panel = html(client.get("/admin/panels/impersonation/"))
    assert "1 active" in panel
    assert "Lee Lead as carol" in panel and "Looking at the folder settings" in panel
    dashboard = html(client.get("/admin/"))
    assert 'data-panel="impersonation"' in dashboard or "Impersonation" in dashboard
