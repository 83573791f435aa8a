"""The services and the policy on their own: the expiry sweep, the customer's notice (with a
real Celery worker), which paths are blocked, and hijack's permission hook."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone

from adminsite import roles
from audit.models import AuditEntry
from impersonation import policy, services, tasks
from impersonation.models import EndReason, ImpersonationSession
from tests.factories import CustomerFactory, StaffFactory
from tests.impersonation.helpers import start
from tests.processes import wait_until

pytestmark = pytest.mark.django_db


def running_session(staff, customer, **data) -> ImpersonationSession:
    client = Client()
    client.force_login(staff)
    response = start(client, customer, **data)
    assert response.status_code == 303, response.content.decode()[:500]
    return ImpersonationSession.objects.get(impersonator=staff, ended_at__isnull=True)


# --- the sweep ---------------------------------------------------------------------------------


def test_the_sweep_ends_overdue_and_revoked_sessions(lead, admin_user, customer, other_customer):
    overdue = running_session(lead, customer)
    ImpersonationSession.objects.filter(pk=overdue.pk).update(
        started_at=timezone.now() - timedelta(minutes=33),
        expires_at=timezone.now() - timedelta(minutes=3),
    )
    revoked = running_session(admin_user, other_customer)
    admin_user.is_active = False
    admin_user.save(update_fields=["is_active"])
    untouched = running_session(StaffFactory(role=roles.SUPPORT_LEAD), CustomerFactory())

    assert services.expire_overdue() == {"expired": 1, "revoked": 1}
    overdue.refresh_from_db()
    revoked.refresh_from_db()
    assert (overdue.end_reason, overdue.ended_at) == (EndReason.EXPIRED, overdue.expires_at)
    assert revoked.end_reason == EndReason.REVOKED
    entries = AuditEntry.objects.filter(event="impersonation.ended")
    assert set(entries.values_list("actor_name", flat=True)) == {"system"}
    untouched.refresh_from_db()
    assert untouched.is_active
    # Idempotent: nothing left to do.
    assert services.expire_overdue() == {"expired": 0, "revoked": 0}


def test_the_sweep_task_runs_through_celery(lead, customer):
    session = running_session(lead, customer)
    lead.groups.remove(Group.objects.get(name=roles.SUPPORT_LEAD))
    result = tasks.expire_sessions.apply()
    assert result.get() == {"expired": 0, "revoked": 1}
    session.refresh_from_db()
    assert session.end_reason == EndReason.REVOKED


def test_an_expired_session_left_behind_does_not_block_the_next_start(lead, customer):
    first = running_session(lead, customer)
    ImpersonationSession.objects.filter(pk=first.pk).update(
        started_at=timezone.now() - timedelta(minutes=40),
        expires_at=timezone.now() - timedelta(minutes=10),
    )
    second = running_session(lead, customer)
    first.refresh_from_db()
    assert first.end_reason == EndReason.EXPIRED
    assert second.is_active


def test_one_running_session_per_staff_member_is_a_database_rule(lead, customer):
    from django.db import IntegrityError, transaction

    session = running_session(lead, customer)
    with pytest.raises(IntegrityError), transaction.atomic():
        ImpersonationSession.objects.create(
            impersonator=lead,
            customer=customer,
            reason="a second one",
            expires_at=session.expires_at,
        )


# --- the customer's notice ---------------------------------------------------------------------


def test_no_email_unless_the_setting_is_on(lead, customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        running_session(lead, customer)
    assert not [cb for cb in callbacks if "notify_customer" in repr(cb)]


def test_the_customer_is_emailed_once_after_the_commit(
    settings, lead, customer, ticket, django_capture_on_commit_callbacks
):
    settings.IMPERSONATION_NOTIFY_CUSTOMER = True
    with django_capture_on_commit_callbacks() as callbacks:
        session = running_session(lead, customer, ticket=ticket)
    queued = [cb for cb in callbacks if getattr(cb, "func", None) == tasks.notify_customer.delay]
    assert [cb.args for cb in queued] == [(session.pk,)]
    assert mail.outbox == []  # nothing before the commit
    tasks.notify_customer.apply(args=(session.pk,), throw=True)
    tasks.notify_customer.apply(args=(session.pk,), throw=True)  # a redelivery
    (message,) = mail.outbox
    assert message.to == [customer.email]
    assert message.subject == "Our support team accessed your account"
    assert "Lee from our support team" in message.body
    assert f"ticket #{ticket.ticket_number}" in message.body
    assert f"/help/tickets/{ticket.pk}/" in message.body
    assert session.reason not in message.body  # the reason is internal
    session.refresh_from_db()
    assert session.customer_notified_at is not None
    assert AuditEntry.objects.filter(event="impersonation.customer_notified").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_the_notice(settings, celery_worker):
    settings.IMPERSONATION_NOTIFY_CUSTOMER = True
    lead = StaffFactory(role=roles.SUPPORT_LEAD, first_name="Lee")
    customer = CustomerFactory(email="erin@example.com")
    session = running_session(lead, customer)
    wait_until(
        lambda: ImpersonationSession.objects.filter(
            pk=session.pk, customer_notified_at__isnull=False
        ).exists(),
        timeout=30,
        what="the worker sending the impersonation notice",
    )
    assert "Our support team accessed your account" in celery_worker.log()
    assert AuditEntry.objects.filter(
        event="impersonation.customer_notified", object_pk=str(session.pk)
    ).exists()


# --- ending from the console -------------------------------------------------------------------


def test_end_session_needs_the_force_permission_for_someone_elses(lead, admin_user, customer):
    from django.core.exceptions import PermissionDenied

    session = running_session(admin_user, customer)
    with pytest.raises(PermissionDenied, match="impersonation.force_end"):
        services.end_session(actor=lead, session=session)
    session.refresh_from_db()
    assert session.is_active


# --- the policy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "rule"),
    [
        ("GET", "/admin/", "console"),
        ("GET", "/admin", "console"),
        ("POST", "/admin/support/5/", "console"),
        ("GET", "/admin/auth/user/3/password/", "console"),
        ("POST", "/admin/impersonation/start", "impersonate"),
        ("POST", "/hijack/acquire/", "impersonate"),
        ("POST", "/admin/impersonation/stop", None),
        ("POST", "/admin/impersonation/stop/", None),
        ("GET", "/accounts/password/change/", "password"),
        ("POST", "/accounts/password_change/", "password"),
        ("GET", "/accounts/reset-password/", "password"),
        ("POST", "/accounts/change-email/", "email"),
        ("POST", "/accounts/settings/otp/", "two_factor"),
        ("POST", "/accounts/email/", "email"),
        ("POST", "/accounts/settings/email-change/", "email"),
        ("GET", "/accounts/2fa/", "two_factor"),
        ("POST", "/accounts/two-factor/disable/", "two_factor"),
        ("POST", "/accounts/security-keys/add/", "two_factor"),
        ("GET", "/shop/checkout/", "checkout"),
        ("POST", "/shop/checkout", "checkout"),
        ("POST", "/shop/checkout/session/", "checkout"),
        ("POST", "/shop/pay/", "checkout"),
        ("POST", "/accounts/tokens/", "api_token"),
        ("POST", "/api/admin/api-tokens", "api_token"),
        ("POST", "/help/tickets/4/delete/", "delete"),
        ("DELETE", "/api/admin/support/tickets/4", "delete"),
        ("GET", "/help/tickets/", None),
        ("POST", "/help/tickets/new/", None),
        ("GET", "/help/tickets/?q=password", None),  # a query string is not the path
        ("GET", "/shop/cart/", None),
        ("POST", "/shop/cart/", None),
        ("GET", "/accounts/", None),
        ("GET", "/shop/orders/", None),
        ("GET", "/help/tickets/emails-not-syncing/", None),
    ],
)
def test_blocked_paths(method, path, rule):
    found = policy.blocked_action(method, path.split("?")[0])
    assert (found.name if found else None) == rule


def test_hijacks_permission_hook_answers_with_our_rules(lead, agent, superuser, customer):
    assert policy.hijack_permission_check(hijacker=lead, hijacked=customer)
    assert not policy.hijack_permission_check(hijacker=agent, hijacked=customer)
    assert not policy.hijack_permission_check(hijacker=lead, hijacked=agent)
    assert policy.hijack_permission_check(hijacker=superuser, hijacked=agent)
    assert not policy.hijack_permission_check(hijacker=lead, hijacked=superuser)
    assert not policy.hijack_permission_check(hijacker=lead, hijacked=None)
