"""What holds on every request of an impersonated session: the time limit and the staff
member's rights are checked on the server, blocked actions are refused (and allowed again
after), every page carries the banner and is recorded, and every audit entry names the
impersonator."""

from __future__ import annotations

import json
from datetime import timedelta
from html import unescape

import pytest
import time_machine
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from adminsite import roles
from audit.models import AuditEntry
from impersonation import services
from impersonation.models import (
    MAX_PAGE_VIEWS,
    EndReason,
    ImpersonationPageView,
    ImpersonationSession,
)
from tests.impersonation.helpers import session_key, start, stop
from tests.roles import URLConf

pytestmark = pytest.mark.django_db

# Pages the shop and account settings will have; stand-ins here, so the rules are tested
# against paths as they will exist (the blocking is by path, before any view runs).
BLOCKED = {
    "/shop/checkout/": "Paying or checking out",
    "/shop/checkout/session/": "Paying or checking out",
    "/accounts/password/change/": "Changing the customer's password",
    "/accounts/email/": "Changing the customer's email address",
    "/accounts/2fa/setup/": "Changing the customer's two-factor sign-in",
    "/accounts/tokens/new/": "Creating or managing API tokens",
    "/help/tickets/1/delete/": "Deleting the customer's data",
}
OPEN = ["/shop/cart/", "/shop/orders/"]


def signed_in_user_id(client) -> int | None:
    value = client.session.get(SESSION_KEY)
    return int(value) if value is not None else None


def html(response) -> str:
    return unescape(response.content.decode())


@pytest.fixture
def impersonating(client, lead, customer):
    """``client`` signed in as the lead, acting as the customer; yields the record."""
    client.force_login(lead)
    start(client, customer)
    return ImpersonationSession.objects.get()


# --- the time limit ----------------------------------------------------------------------------


def test_expiry_is_enforced_on_the_server_even_with_the_cookie_kept(client, impersonating, lead):
    cookie = session_key(client)
    with time_machine.travel(impersonating.started_at + timedelta(minutes=29), tick=False):
        assert client.get("/help/tickets/").status_code == 200
        assert session_key(client) == cookie
    with time_machine.travel(impersonating.expires_at + timedelta(seconds=1), tick=False):
        # The browser still sends the same cookie; the server ends the impersonation.
        assert session_key(client) == cookie
        response = client.get("/help/tickets/")
    assert response.status_code == 303
    assert response["Location"] == f"/admin/impersonation/{impersonating.pk}/"
    assert signed_in_user_id(client) == lead.pk
    assert session_key(client) != cookie
    impersonating.refresh_from_db()
    assert impersonating.end_reason == EndReason.EXPIRED
    assert impersonating.ended_at == impersonating.expires_at
    ended = AuditEntry.objects.get(event="impersonation.ended")
    assert (ended.actor_id, ended.actor_name) == (None, "system")
    page = client.get(response["Location"])
    assert "reached its 30-minute limit" in html(page)


def test_an_expired_session_answers_the_api_in_json(client, impersonating):
    with time_machine.travel(impersonating.expires_at + timedelta(minutes=5), tick=False):
        response = client.get("/api/admin/me")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert "30-minute limit" in response.json()["detail"]


def test_htmx_requests_are_redirected_by_header(client, impersonating):
    with time_machine.travel(impersonating.expires_at + timedelta(minutes=1), tick=False):
        response = client.get("/help/tickets/", HTTP_HX_REQUEST="true")
    assert response.status_code == 204
    assert response["HX-Redirect"] == f"/admin/impersonation/{impersonating.pk}/"


# --- revocation --------------------------------------------------------------------------------


def test_losing_the_permission_ends_the_impersonation_at_the_next_request(
    client, impersonating, lead
):
    lead.groups.remove(Group.objects.get(name=roles.SUPPORT_LEAD))
    response = client.get("/help/tickets/")
    assert response.status_code == 303
    assert response["Location"] == "/admin/"  # no longer allowed to read the sessions either
    assert signed_in_user_id(client) == lead.pk
    impersonating.refresh_from_db()
    assert impersonating.end_reason == EndReason.REVOKED
    ended = AuditEntry.objects.get(event="impersonation.ended")
    assert "impersonation.impersonate permission" in ended.additional_data["detail"]


def test_a_deactivated_staff_member_is_signed_out(client, impersonating, lead):
    lead.is_active = False
    lead.save(update_fields=["is_active"])
    response = client.get("/help/tickets/")
    assert response.status_code == 303
    assert response["Location"] == "/admin/login/"
    assert signed_in_user_id(client) is None
    impersonating.refresh_from_db()
    assert impersonating.end_reason == EndReason.REVOKED
    logout = AuditEntry.objects.get(event="auth.logout")
    assert (logout.actor_id, logout.impersonator_id) == (impersonating.customer_id, lead.pk)


def test_a_customer_made_staff_meanwhile_is_no_longer_impersonated(client, impersonating, customer):
    customer.is_staff = True
    customer.save(update_fields=["is_staff"])
    assert client.get("/help/tickets/").status_code == 303
    impersonating.refresh_from_db()
    assert impersonating.end_reason == EndReason.REVOKED


def test_a_password_change_of_the_customer_signs_the_browser_out(client, impersonating, customer):
    customer.set_password("a-brand-new-pass-phrase-2026")
    customer.save()
    response = client.get("/help/tickets/")
    assert response.status_code == 303
    assert response["Location"] == "/admin/login/"
    assert signed_in_user_id(client) is None
    impersonating.refresh_from_db()
    assert impersonating.end_reason == EndReason.REVOKED


def test_an_admin_forcing_the_end_sends_the_browser_back(client, impersonating, admin_user, lead):
    admin = Client()
    admin.force_login(admin_user)
    response = admin.post(f"/admin/impersonation/{impersonating.pk}/end")
    assert response.status_code == 303
    impersonating.refresh_from_db()
    assert (impersonating.end_reason, impersonating.ended_by) == (EndReason.FORCED, admin_user)

    response = client.get("/help/tickets/")
    assert response.status_code == 303
    assert signed_in_user_id(client) == lead.pk
    assert "An administrator ended this impersonation." in html(client.get(response["Location"]))
    # Only one "ended" entry: the admin's; the browser finding out records nothing more.
    ended = AuditEntry.objects.get(event="impersonation.ended")
    assert ended.actor_id == admin_user.pk and ended.additional_data["reason"] == "forced"


def test_a_session_switched_without_a_record_is_signed_out(client, lead, customer):
    """hijack's session key alone (as django-hijack's own views would leave it) is not an
    impersonation this site recognises."""
    client.force_login(customer)
    session = client.session
    session["hijack_history"] = [str(lead.pk)]
    session.save()
    response = client.get("/help/tickets/")
    assert response.status_code == 303 and response["Location"] == "/admin/login/"
    assert signed_in_user_id(client) is None


# --- blocked actions ---------------------------------------------------------------------------


def test_blocked_actions_are_refused_while_impersonating_and_allowed_after(
    client, settings, lead, customer
):
    settings.ROOT_URLCONF = URLConf(*BLOCKED, *OPEN, "/api/admin/tokens")
    client.force_login(lead)
    start(client, customer)
    session = ImpersonationSession.objects.get()

    for path, message in BLOCKED.items():
        for method in ("get", "post"):
            response = getattr(client, method)(path)
            assert response.status_code == 403, (method, path)
            assert message in html(response), path
            assert 'data-testid="impersonation-banner"' in html(response)
    for path in OPEN:
        response = client.get(path)
        assert response.status_code == 200 and f"page at {path}" in html(response)
    # Deleting by method, anywhere.
    assert client.delete("/shop/cart/").status_code == 403
    # The API answers in JSON.
    response = client.post("/api/admin/tokens", {}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["code"] == "impersonation_blocked"
    assert "API tokens" in response.json()["detail"]
    # Every console page, Django's model admin included.
    for path in ("/admin/", "/admin/support/", "/admin/audit/", "/admin/auth/user/",
                 "/admin/impersonation/", f"/admin/impersonation/{session.pk}/"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 403, path
        assert "Console pages are closed while you act as a customer" in html(response)

    blocked = AuditEntry.objects.filter(event="impersonation.action_blocked")
    assert blocked.count() == 2 * len(BLOCKED) + 2 + 6
    assert set(blocked.values_list("actor_id", "impersonator_id")) == {(customer.pk, lead.pk)}
    assert set(blocked.values_list("object_pk", flat=True)) == {str(session.pk)}

    stop(client)
    assert signed_in_user_id(client) == lead.pk
    for path in [*BLOCKED, *OPEN]:
        assert client.get(path).status_code == 200, path
    # And for the customer in their own session, nothing is blocked either.
    own = Client()
    own.force_login(customer)
    for path in BLOCKED:
        assert own.get(path).status_code == 200, path


# --- the banner --------------------------------------------------------------------------------


def test_every_page_shows_the_banner_once(client, settings, impersonating):
    settings.ROOT_URLCONF = URLConf("/shop/cart/")
    pages = {
        "/help/tickets/": 200,  # the customer layout
        "/help/tickets/999999/": 404,  # an error page (auth layout)
        "/accounts/": 200,
        "/shop/cart/": 200,  # a page without the layouts: the middleware inserts it
        "/shop/checkout/": 403,  # a refusal
    }
    for path, status in pages.items():
        response = client.get(path)
        assert response.status_code == status, path
        page = html(response)
        assert page.count("data-impersonation-banner") == 1, path
        assert "Lee Lead" in page and "Carol Customer" in page, path
        assert 'action="/admin/impersonation/stop"' in page, path
        assert "no-store" in response["Cache-Control"], path
    # No way to dismiss it.
    banner = (
        html(client.get("/help/tickets/"))
        .split("data-impersonation-banner", 1)[1]
        .split("</div>", 1)[0]
    )
    assert "data-dismiss" not in banner
    assert "30 min left" in banner or "29 min left" in banner


def test_htmx_fragments_get_no_banner_of_their_own(client, settings, impersonating):
    settings.ROOT_URLCONF = URLConf("/shop/cart/")
    response = client.get("/shop/cart/", HTTP_HX_REQUEST="true")
    assert "data-impersonation-banner" not in html(response)


def test_no_banner_for_anyone_not_impersonating(client, customer, lead):
    client.force_login(customer)
    assert "impersonation-banner" not in html(client.get("/help/tickets/"))
    client.force_login(lead)
    assert "impersonation-banner" not in html(client.get("/admin/"))


# --- the record of pages -----------------------------------------------------------------------


def test_pages_visited_are_recorded_in_order(client, impersonating, customer):
    client.get("/help/tickets/?status=active")
    client.get("/accounts/")
    client.get("/shop/checkout/")
    client.get("/admin/")
    stop(client)
    rows = list(
        ImpersonationPageView.objects.order_by("at", "id").values_list(
            "method", "path", "status_code", "blocked"
        )
    )
    assert rows == [
        ("GET", "/help/tickets/?status=active", 200, False),
        ("GET", "/accounts/", 200, False),
        ("GET", "/shop/checkout/", 403, True),
        ("GET", "/admin/", 403, True),
    ]
    impersonating.refresh_from_db()
    assert impersonating.page_count == 4


def test_pages_kept_are_capped_but_all_are_counted(impersonating):
    for number in range(MAX_PAGE_VIEWS + 3):
        services.record_page_view(
            session_id=impersonating.pk,
            method="GET",
            path=f"/help/tickets/?page={number}",
            status_code=200,
        )
    impersonating.refresh_from_db()
    assert impersonating.page_count == MAX_PAGE_VIEWS + 3
    assert ImpersonationPageView.objects.count() == MAX_PAGE_VIEWS


def test_an_impersonated_request_costs_a_few_queries(
    client, settings, impersonating, django_assert_max_num_queries
):
    settings.ROOT_URLCONF = URLConf("/shop/cart/")
    client.get("/shop/cart/")
    # Session, the record with both users, the staff member's permissions (user and group),
    # the signed-in user, the page view.
    with django_assert_max_num_queries(6):
        client.get("/shop/cart/")


# --- the trail ---------------------------------------------------------------------------------


def test_every_entry_written_during_the_session_names_the_impersonator(
    client, lead, customer, ticket, category
):
    client.force_login(lead)
    start(client, customer, ticket=ticket)
    session = ImpersonationSession.objects.get()
    client.get(f"/help/tickets/{ticket.pk}/")
    response = client.post(
        "/help/tickets/new/",
        {"subject": "Second problem", "category": category.slug, "priority": "normal",
         "description": "Filed while support looked at my account."},
    )  # fmt: skip
    assert response.status_code == 303
    client.post(f"/help/tickets/{ticket.pk}/reply/", {"body": "Adding the screenshot."})
    client.get("/shop/checkout/")
    stop(client)
    session.refresh_from_db()

    started = AuditEntry.objects.get(event="impersonation.started")
    ended = AuditEntry.objects.get(event="impersonation.ended")
    during = list(AuditEntry.objects.filter(id__range=(started.pk, ended.pk)).order_by("id"))
    events = [entry.event for entry in during]
    assert events[0] == "impersonation.started" and events[-1] == "impersonation.ended"
    assert {"auth.login", "ticket.created", "impersonation.action_blocked"} <= set(events)
    for entry in during:
        if entry.event in ("impersonation.started", "impersonation.ended"):
            # The staff member's own acts, in their own name.
            assert (entry.actor_id, entry.impersonator_id) == (lead.pk, None), entry.event
        else:
            assert entry.impersonator_id == lead.pk, entry.event
            assert entry.impersonator_name == "Lee Lead (lee)", entry.event
            assert entry.actor_id == customer.pk, entry.event
    # The session's page lists the same entries as its trail.
    client.force_login(lead)
    page = html(client.get(f"/admin/impersonation/{session.pk}/"))
    for entry in during:
        assert f'data-entry="{entry.pk}"' in page


def test_the_ended_entry_lists_the_pages(client, impersonating):
    client.get("/help/tickets/")
    client.get("/shop/checkout/")
    stop(client)
    ended = AuditEntry.objects.get(event="impersonation.ended")
    assert ended.additional_data["pages"] == [
        "GET /help/tickets/ 200",
        "GET /shop/checkout/ 403",
    ]
    assert ended.additional_data["page_count"] == 2
    assert json.dumps(ended.additional_data)  # plain JSON


def test_the_sweep_leaves_sessions_within_their_limit_alone(impersonating):
    assert services.expire_overdue(now=timezone.now()) == {"expired": 0, "revoked": 0}
    impersonating.refresh_from_db()
    assert impersonating.is_active
