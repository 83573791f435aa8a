"""Fixtures for the tickets tests: one user per role, categories, a ticket maker, and a way to
run the email tasks that services queue after commit."""

from __future__ import annotations

import pytest

from adminsite import roles
from adminsite import services as console_services
from tests.factories import CustomerFactory, StaffFactory
from tests.roles import role_users  # noqa: F401 - a fixture, shared with this folder's tests
from tickets import services
from tickets.models import Category, Priority, Ticket

CATEGORIES = ["email_sync", "billing", "account", "bug", "feature_request", "other"]


@pytest.fixture
def categories(db) -> dict[str, Category]:
    """The seeded categories by slug (recreated if a transactional test flushed them)."""
    found = {}
    for position, slug in enumerate(CATEGORIES, start=1):
        found[slug], _ = Category.objects.get_or_create(
            slug=slug,
            defaults={"name": slug.replace("_", " ").capitalize(), "position": position * 10},
        )
    return found


@pytest.fixture
def agent(db):
    return StaffFactory(role=roles.SUPPORT_AGENT, first_name="Sam", last_name="Carter")


@pytest.fixture
def agent2(db):
    return StaffFactory(role=roles.SUPPORT_AGENT, first_name="Lena", last_name="Fischer")


@pytest.fixture
def lead(db):
    return StaffFactory(role=roles.SUPPORT_LEAD)


@pytest.fixture
def ops(db):
    return StaffFactory(role=roles.OPS)


@pytest.fixture
def admin_user(db):
    return StaffFactory(role=roles.ADMIN)


@pytest.fixture
def customer(db):
    return CustomerFactory(first_name="Maria", last_name="Garcia")


@pytest.fixture
def other_customer(db):
    return CustomerFactory()


@pytest.fixture
def make_ticket(categories, customer):
    """``make_ticket(subject=..., requester=..., priority=..., status=..., assignee=...)``:
    a ticket opened by its requester through the services, then moved to ``status``."""

    def make(
        *,
        subject="Email sync not working",
        description="Emails stopped syncing for Gmail.",
        category="email_sync",
        priority=Priority.NORMAL,
        requester=None,
        status=None,
        assignee=None,
        actor=None,
        tags=(),
    ):
        requester = requester or customer
        ticket = services.create_ticket(
            actor=requester,
            subject=subject,
            description=description,
            category=categories[category],
            priority=priority,
            requester=requester,
            tags=tags,
        )
        if assignee is not None:
            ticket = services.assign_ticket(actor=assignee, ticket=ticket, assignee=assignee)
        if status is not None and status != ticket.status:
            staff = actor or assignee or StaffFactory(role=roles.SUPPORT_LEAD)
            if status == "closed":
                ticket = services.close(actor=staff, ticket=ticket)
            else:
                ticket = services.change_status(actor=staff, ticket=ticket, status=status)
        return Ticket.objects.get(pk=ticket.pk)

    return make


@pytest.fixture
def token_for():
    """``token_for(user)`` → headers for the test client with a Bearer token."""

    def make(user):
        _token, raw = console_services.create_api_token(actor=user, user=user, name="tests")
        return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    return make
