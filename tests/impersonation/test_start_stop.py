"""Starting and stopping an impersonation through POST /admin/impersonation/start and /stop:
method, CSRF, permission, who may be impersonated, nesting, session keys, ``next``, and what
the record and the trail say afterwards."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from audit.models import AuditEntry
from impersonation.models import EndReason, ImpersonationSession
from tests.impersonation.helpers import REASON, START, STOP, session_key, start, stop

pytestmark = pytest.mark.django_db


def signed_in_user_id(client) -> int | None:
    value = client.session.get(SESSION_KEY)
    return int(value) if value is not None else None


# --- the way in is POST, with CSRF, for those holding the permission ---------------------------


def test_get_on_start_and_stop_is_405(client, lead, customer):
    client.force_login(lead)
    assert client.get(START, {"user": customer.pk, "reason": REASON}).status_code == 405
    assert client.get(STOP).status_code == 405
    assert not ImpersonationSession.objects.exists()
    assert signed_in_user_id(client) == lead.pk


def test_start_without_a_csrf_token_is_403(lead, customer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    response = client.post(START, {"user": customer.pk, "reason": REASON})
    assert response.status_code == 403
    assert not ImpersonationSession.objects.exists()
    assert signed_in_user_id(client) == lead.pk


def test_start_with_the_csrf_token_of_the_page_works(lead, customer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    client.get("/admin/impersonation/")
    token = client.cookies["csrftoken"].value
    response = client.post(
        START, {"user": customer.pk, "reason": REASON, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 303
    assert signed_in_user_id(client) == customer.pk


def test_stop_without_a_csrf_token_is_403(lead, customer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    client.get("/admin/impersonation/")
    start(client, customer, csrfmiddlewaretoken=client.cookies["csrftoken"].value)
    assert signed_in_user_id(client) == customer.pk
    assert client.post(STOP).status_code == 403
    assert signed_in_user_id(client) == customer.pk
    assert ImpersonationSession.objects.get().is_active


@pytest.mark.parametrize("role", ["agent", "ops"])
def test_staff_without_the_permission_get_403(client, role, customer, request):
    client.force_login(request.getfixturevalue(role))
    response = start(client, customer)
    assert response.status_code == 403
    assert not ImpersonationSession.objects.exists()
    assert not AuditEntry.objects.filter(event="impersonation.started").exists()


def test_anonymous_and_customers_are_sent_to_sign_in(client, customer, other_customer):
    response = start(client, customer)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.force_login(other_customer)
    response = start(client, customer)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert signed_in_user_id(client) == other_customer.pk
    assert not ImpersonationSession.objects.exists()


@pytest.mark.parametrize("role", ["lead", "admin_user"])
def test_lead_and_admin_hold_the_permission(client, role, customer, request):
    staff = request.getfixturevalue(role)
    assert staff.has_perm("impersonation.impersonate")
    client.force_login(staff)
    assert start(client, customer).status_code == 303
    assert signed_in_user_id(client) == customer.pk


# --- who may be impersonated -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("agent", "is a staff member; only customers can be impersonated"),
        ("admin_user", "is a staff member; only customers can be impersonated"),
        ("superuser", "is a superuser; superusers cannot be impersonated"),
        ("lead", "You cannot impersonate yourself."),
        ("inactive", "account is inactive"),
    ],
)
def test_refused_targets(client, lead, customer, target, message, request):
    if target == "inactive":
        customer.is_active = False
        customer.save(update_fields=["is_active"])
        victim = customer
    else:
        victim = request.getfixturevalue(target)
    client.force_login(lead)
    before = session_key(client)
    response = start(client, victim)
    assert response.status_code == 403
    assert message in response.content.decode()
    assert 'data-testid="start-errors"' in response.content.decode()
    assert not ImpersonationSession.objects.exists()
    assert signed_in_user_id(client) == lead.pk
    assert session_key(client) == before


def test_a_superuser_may_impersonate_staff_but_not_another_superuser(client, superuser, lead):
    other_root = type(superuser).objects.create_superuser("root2", "r2@example.com", "pw-r2-2026")
    client.force_login(superuser)
    assert start(client, other_root).status_code == 403
    assert start(client, lead).status_code == 303
    assert signed_in_user_id(client) == lead.pk
    assert ImpersonationSession.objects.get().impersonator == superuser


def test_an_admin_who_is_not_a_superuser_may_not_impersonate_staff(client, admin_user, agent):
    client.force_login(admin_user)
    response = start(client, agent)
    assert response.status_code == 403
    assert "only customers can be impersonated" in response.content.decode()


# --- no nesting --------------------------------------------------------------------------------


def test_starting_while_impersonating_is_refused(client, superuser, lead, customer):
    """A superuser acting as a lead holds the lead's impersonate permission, and still cannot
    start another impersonation from inside the first."""
    client.force_login(superuser)
    start(client, lead)
    assert signed_in_user_id(client) == lead.pk
    response = start(client, customer)
    assert response.status_code == 403
    assert "stop this impersonation before starting another" in response.content.decode()
    assert signed_in_user_id(client) == lead.pk
    assert ImpersonationSession.objects.count() == 1
    assert client.session["hijack_history"] == [str(superuser.pk)]
    blocked = AuditEntry.objects.get(event="impersonation.action_blocked")
    assert (blocked.actor_id, blocked.impersonator_id) == (lead.pk, superuser.pk)


def test_a_second_impersonation_from_another_browser_is_refused(lead, customer, other_customer):
    first, second = Client(), Client()
    first.force_login(lead)
    second.force_login(lead)
    assert start(first, customer).status_code == 303
    response = start(second, other_customer)
    assert response.status_code == 403
    assert "already impersonating carol in another browser" in response.content.decode()
    assert signed_in_user_id(second) == lead.pk
    assert ImpersonationSession.objects.count() == 1


def test_hijacks_own_views_are_not_reachable(client, superuser, customer):
    client.force_login(superuser)
    assert client.post("/hijack/acquire/", {"user_pk": customer.pk}).status_code == 404
    assert signed_in_user_id(client) == superuser.pk


# --- input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"user": "carol", "reason": "   "}, "Give a reason for impersonating"),
        ({"user": "carol"}, "Give a reason for impersonating"),
        ({"user": "nobody-here", "reason": REASON}, "There is no user &#x27;nobody-here&#x27;"),
        ({"reason": REASON}, "Choose the customer"),
        ({"user": "carol", "reason": "x" * 501}, "at most 500 characters"),
        ({"user": "carol", "reason": REASON, "ticket": "abc"}, "is not a ticket"),
        ({"user": "carol", "reason": REASON, "ticket": "999999"}, "There is no ticket 999999"),
    ],
)
def test_bad_input_is_a_400_naming_the_problem(client, lead, customer, data, message):
    client.force_login(lead)
    response = client.post(START, data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ImpersonationSession.objects.exists()


def test_the_ticket_must_be_the_customers(client, lead, ticket, other_customer):
    client.force_login(lead)
    response = start(client, other_customer, ticket=ticket)
    assert response.status_code == 400
    assert f"Ticket #{ticket.ticket_number} was opened by someone else" in response.content.decode()


def test_the_customer_can_be_named_by_username_or_email(client, lead, customer):
    client.force_login(lead)
    response = client.post(START, {"user": "CAROL@example.com", "reason": REASON})
    assert response.status_code == 303
    assert signed_in_user_id(client) == customer.pk


# --- starting: the switch, the record, the trail ---------------------------------------------


def test_start_switches_to_the_customer_and_records_everything(client, lead, customer, ticket):
    customer.refresh_from_db()
    last_login = customer.last_login
    client.force_login(lead)
    before = session_key(client)
    response = start(
        client,
        customer,
        ticket=ticket,
        headers={"HTTP_USER_AGENT": "Firefox/140", "REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 303
    assert response["Location"] == f"/help/tickets/{ticket.pk}/"
    assert session_key(client) != before
    assert signed_in_user_id(client) == customer.pk

    session = ImpersonationSession.objects.get()
    assert (session.impersonator, session.customer, session.ticket) == (lead, customer, ticket)
    assert session.reason == REASON
    assert (session.ip_address, session.user_agent) == ("203.0.113.7", "Firefox/140")
    assert session.is_active
    assert (session.expires_at - session.started_at).total_seconds() == 30 * 60

    customer.refresh_from_db()
    assert customer.last_login == last_login  # untouched by the switch

    started = AuditEntry.objects.get(event="impersonation.started")
    assert (started.actor_id, started.object_pk) == (lead.pk, str(session.pk))
    assert started.additional_data["reason"] == REASON
    assert started.additional_data["ticket_id"] == ticket.pk
    login = AuditEntry.objects.get(event="auth.login", actor_id=customer.pk)
    assert (login.actor_id, login.impersonator_id) == (customer.pk, lead.pk)

    page = client.get(response["Location"])
    assert page.status_code == 200
    assert 'data-testid="impersonation-banner"' in page.content.decode()


def test_the_time_limit_is_a_setting(client, settings, lead, customer):
    settings.IMPERSONATION_MAX_MINUTES = 10
    client.force_login(lead)
    start(client, customer)
    session = ImpersonationSession.objects.get()
    assert (session.expires_at - session.started_at).total_seconds() == 600


def test_without_a_ticket_the_staff_member_lands_on_the_customers_tickets(client, lead, customer):
    client.force_login(lead)
    assert start(client, customer)["Location"] == "/help/tickets/"


@pytest.mark.parametrize(
    "evil",
    [
        "https://evil.example",
        "https://evil.example/help/tickets/",
        "//evil.example/",
        "/\\evil.example",
        "javascript:alert(document.cookie)",
        "http://testserver/help/tickets/",
        "/admin/",  # this site, but closed while impersonating
        "/accounts/password/change/",
    ],
)
def test_next_is_followed_only_to_this_sites_open_paths(client, lead, customer, evil):
    client.force_login(lead)
    response = start(client, customer, next=evil)
    assert response.status_code == 303
    assert response["Location"] == "/help/tickets/"


def test_a_safe_next_is_followed(client, lead, customer):
    client.force_login(lead)
    response = start(client, customer, next="/help/tickets/?status=active")
    assert response["Location"] == "/help/tickets/?status=active"


# --- stopping ----------------------------------------------------------------------------------


def test_stop_returns_to_the_staff_member_with_a_new_session_key(client, lead, customer):
    customer.refresh_from_db()
    client.force_login(lead)
    lead.refresh_from_db()
    staff_last_login = lead.last_login
    start(client, customer)
    client.get("/help/tickets/")
    during = session_key(client)
    response = stop(client)
    assert response.status_code == 303
    session = ImpersonationSession.objects.get()
    assert response["Location"] == f"/admin/impersonation/{session.pk}/"
    assert session_key(client) != during
    assert signed_in_user_id(client) == lead.pk
    assert "hijack_history" not in client.session
    assert "impersonation_session" not in client.session
    lead.refresh_from_db()
    assert lead.last_login == staff_last_login

    assert session.end_reason == EndReason.STOPPED and session.ended_by == lead
    ended = AuditEntry.objects.get(event="impersonation.ended")
    assert ended.actor_id == lead.pk
    assert ended.additional_data["reason"] == "stopped"
    assert ended.additional_data["pages"] == ["GET /help/tickets/ 200"]

    # Back in the console, with no banner.
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "impersonation-banner" not in page.content.decode()
    assert "You stopped impersonating carol" in page.content.decode()


def test_stop_follows_a_safe_next_only(client, lead, customer, ticket):
    client.force_login(lead)
    start(client, customer)
    assert stop(client, next="https://evil.example/")["Location"].startswith(
        "/admin/impersonation/"
    )
    start(client, customer)
    assert stop(client, next=f"/admin/support/{ticket.pk}/")["Location"] == (
        f"/admin/support/{ticket.pk}/"
    )


def test_stop_when_not_impersonating_is_a_400(client, lead, customer):
    client.force_login(lead)
    response = stop(client)
    assert response.status_code == 400
    assert "You are not impersonating anyone" in response.content.decode()
    client.force_login(customer)
    assert stop(client).status_code == 400
    assert signed_in_user_id(client) == customer.pk


def test_signing_out_while_impersonating_ends_the_session_first(client, lead, customer):
    client.force_login(lead)
    start(client, customer)
    response = client.post("/accounts/logout/")
    assert response.status_code in (302, 303)
    assert signed_in_user_id(client) is None
    session = ImpersonationSession.objects.get()
    assert session.end_reason == EndReason.STOPPED and session.ended_by == lead
