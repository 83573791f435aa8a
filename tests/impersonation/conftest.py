"""Fixtures for the impersonation tests: a user per role, a superuser, a customer with a ticket."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from adminsite import roles
from tests.factories import CustomerFactory, StaffFactory
from tests.roles import role_users  # noqa: F401 - a fixture, shared with this folder's tests
from tickets import services as ticket_services
from tickets.models import Category


@pytest.fixture
def lead(db):
    return StaffFactory(username="lee", role=roles.SUPPORT_LEAD, first_name="Lee", last_name="Lead")


@pytest.fixture
def admin_user(db):
    return StaffFactory(username="ada", role=roles.ADMIN, first_name="Ada", last_name="Admin")


@pytest.fixture
def agent(db):
    return StaffFactory(username="sam", role=roles.SUPPORT_AGENT)


@pytest.fixture
def ops(db):
    return StaffFactory(username="opal", role=roles.OPS)


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(
        "root", "root@example.com", "root-pass-phrase-2026", first_name="Rita", last_name="Root"
    )


@pytest.fixture
def customer(db):
    return CustomerFactory(
        username="carol", first_name="Carol", last_name="Customer", email="carol@example.com"
    )


@pytest.fixture
def other_customer(db):
    return CustomerFactory(username="dave", email="dave@example.com")


@pytest.fixture
def category(db):
    return Category.objects.get_or_create(
        slug="email_sync", defaults={"name": "Email sync", "position": 10}
    )[0]


@pytest.fixture
def ticket(customer, category):
    return ticket_services.create_ticket(
        actor=customer,
        requester=customer,
        subject="Inbox stopped syncing",
        description="No new mail since Tuesday.",
        category=category,
        priority="high",
    )
