"""Staff roles: the groups and their permissions, the access matrix, and the sidebar per role."""

from __future__ import annotations

import re
from importlib import import_module

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from adminsite import roles, services
from adminsite.navigation import NAVIGATION
from tests.factories import StaffFactory
from tests.roles import (
    SIDEBAR,
    STAFF,
    STAFF_ROLE_NAMES,
    URL_MATRIX,
    Access,
    URLConf,
    assert_access_matrix,
    role_user,
)

# --- the matrix ------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("access", URL_MATRIX, ids=str)
def test_access_matrix(client, access: Access):
    assert_access_matrix(
        client,
        access.url,
        access.allowed,
        method=access.method,
        status=access.status,
        data=access.data,
        expect=access.expect,
    )


@pytest.mark.django_db
def test_the_matrix_helper_reports_every_role_that_gets_the_wrong_answer(client):
    # /admin/data/ is open to every staff role; claiming only admin may open it must fail,
    # naming the three staff roles that were (rightly) let in.
    with pytest.raises(AssertionError) as failure:
        assert_access_matrix(client, "/admin/data/", allowed={"admin"})
    message = str(failure.value)
    for role in ("lead", "agent", "ops"):
        assert re.search(rf"{role}\s+expected 403, got 200", message), message
    assert "admin " not in message and "customer" not in message


@pytest.mark.django_db
def test_api_refusals_are_401_for_anonymous_and_403_for_customers(client):
    assert_access_matrix(client, "/api/admin/me", allowed=STAFF)


def test_the_matrix_helper_rejects_unknown_roles(client):
    with pytest.raises(ValueError, match="Unknown roles \\['supervisor'\\]"):
        assert_access_matrix(client, "/admin/", allowed={"supervisor"})


# --- groups and permissions --------------------------------------------------------------------


def keys_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {roles.permission_key(p) for p in group.permissions.select_related("content_type")}


@pytest.mark.django_db
def test_every_role_is_a_group():
    assert set(Group.objects.values_list("name", flat=True)) >= set(roles.ROLES)


@pytest.mark.django_db
def test_admin_holds_every_permission():
    assert Group.objects.get(name=roles.ADMIN).permissions.count() == Permission.objects.count()


@pytest.mark.django_db
def test_ops_has_jobs_and_reads_tickets_only():
    keys = keys_of(roles.OPS)
    assert {"adminsite.apitoken.view_jobs", "adminsite.apitoken.run_jobs"} <= keys
    assert all(
        key.startswith(
            (
                "monitoring.",
                "adminsite.apitoken.view_jobs",
                "adminsite.apitoken.run_jobs",
                "tickets.",
            )
        )
        for key in keys
    ), keys
    assert all(key.split(".")[2].startswith("view_") for key in keys if key.startswith("tickets."))
    assert not any(key.startswith(("auth.", "audit.", "shop.", "impersonation.")) for key in keys)


@pytest.mark.django_db
def test_support_agent_works_tickets_but_never_deletes_or_configures():
    keys = keys_of(roles.SUPPORT_AGENT)
    assert all(key.startswith("tickets.") for key in keys), keys
    assert not any(".delete_" in key for key in keys)
    # Writes only on tickets, their comments and the agent's saved views: settings models (SLA
    # policies, assignment rules, categories, canned replies) are at most readable.
    written_models = {key.split(".")[1] for key in keys if ".add_" in key or ".change_" in key}
    assert all(
        model in {"ticket", "savedview"} or model.endswith("comment") for model in written_models
    ), written_models
    assert not any(".reopen_closed_ticket" in key for key in keys)
    assert {
        "tickets.ticket.view_ticket",
        "tickets.ticket.add_ticket",
        "tickets.ticket.change_ticket",
    } <= keys


@pytest.mark.parametrize(
    ("role", "key", "granted"),
    [
        (roles.ADMIN, "anything.model.whatever", True),
        (roles.SUPPORT_LEAD, "tickets.slapolicy.change_slapolicy", True),
        (roles.SUPPORT_LEAD, "tickets.assignmentrule.add_assignmentrule", True),
        (roles.SUPPORT_LEAD, "tickets.ticket.delete_ticket", True),
        (roles.SUPPORT_LEAD, "impersonation.impersonationsession.impersonate", True),
        (roles.SUPPORT_LEAD, "audit.auditentry.view_auditentry", True),
        (roles.SUPPORT_LEAD, "audit.auditentry.delete_auditentry", False),
        (roles.SUPPORT_LEAD, "monitoring.alertrule.view_alertrule", False),
        (roles.SUPPORT_LEAD, "adminsite.apitoken.run_jobs", False),
        (roles.SUPPORT_AGENT, "tickets.ticket.view_ticket", True),
        (roles.SUPPORT_AGENT, "tickets.ticket.change_ticket", True),
        (roles.SUPPORT_AGENT, "tickets.comment.add_comment", True),
        (roles.SUPPORT_AGENT, "tickets.ticketcomment.change_ticketcomment", True),
        (roles.SUPPORT_AGENT, "tickets.ticket.delete_ticket", False),
        (roles.SUPPORT_AGENT, "tickets.comment.delete_comment", False),
        (roles.SUPPORT_AGENT, "tickets.slapolicy.view_slapolicy", False),
        (roles.SUPPORT_AGENT, "tickets.ticketevent.view_ticketevent", True),
        (roles.SUPPORT_AGENT, "tickets.ticketevent.change_ticketevent", False),
        (roles.SUPPORT_AGENT, "tickets.savedview.delete_savedview", False),
        (roles.SUPPORT_AGENT, "tickets.category.change_category", False),
        (roles.SUPPORT_AGENT, "tickets.slapolicy.change_slapolicy", False),
        (roles.SUPPORT_AGENT, "impersonation.impersonationsession.impersonate", False),
        (roles.OPS, "monitoring.alertrule.delete_alertrule", True),
        (roles.OPS, "tickets.ticket.view_ticket", True),
        (roles.OPS, "tickets.ticket.change_ticket", False),
        (roles.OPS, "adminsite.apitoken.view_jobs", True),
        (roles.OPS, "adminsite.apitoken.add_apitoken", False),
    ],
)
def test_role_patterns(role, key, granted):
    assert roles.matches(key, roles.ROLES[role]) is granted


@pytest.mark.django_db
def test_permissions_of_models_added_later_reach_the_roles_on_migrate():
    # A model that lands later: its content type and permissions appear, then migrate's
    # post_migrate signal re-syncs the groups.
    content_type = ContentType.objects.create(app_label="tickets", model="escalationpolicy")
    for action in ("view", "add", "change", "delete"):
        Permission.objects.create(
            content_type=content_type,
            codename=f"{action}_escalationpolicy",
            name=f"Can {action} escalation policy",
        )
    assert "tickets.escalationpolicy.change_escalationpolicy" not in keys_of(roles.SUPPORT_LEAD)

    emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)

    assert "tickets.escalationpolicy.change_escalationpolicy" in keys_of(roles.SUPPORT_LEAD)
    assert "tickets.escalationpolicy.delete_escalationpolicy" in keys_of(roles.ADMIN)
    assert "tickets.escalationpolicy.view_escalationpolicy" in keys_of(roles.OPS)
    assert "tickets.escalationpolicy.change_escalationpolicy" not in keys_of(roles.OPS)
    assert not any("escalationpolicy" in key for key in keys_of(roles.SUPPORT_AGENT))


@pytest.mark.django_db
def test_sync_removes_permissions_a_role_no_longer_matches():
    stray = Permission.objects.get(content_type__app_label="auth", codename="delete_user")
    Group.objects.get(name=roles.OPS).permissions.add(stray)
    roles.sync_roles()
    assert "auth.user.delete_user" not in keys_of(roles.OPS)


@pytest.mark.django_db
def test_the_data_migration_creates_the_groups():
    Group.objects.filter(name__in=roles.ROLES).delete()
    migration = import_module("adminsite.migrations.0002_roles")
    state_apps = MigrationLoader(connection).project_state(("adminsite", "0002_roles")).apps
    with connection.schema_editor() as schema_editor:
        migration.create_roles(state_apps, schema_editor)
    assert set(Group.objects.filter(name__in=roles.ROLES).values_list("name", flat=True)) == set(
        roles.ROLES
    )
    assert {"adminsite.apitoken.view_jobs", "adminsite.apitoken.run_jobs"} <= keys_of(roles.OPS)
    assert keys_of(roles.ADMIN) >= {"auth.user.change_user", "adminsite.apitoken.add_apitoken"}


# --- staff users -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(roles.ROLES))
def test_a_staff_user_is_staff_and_in_the_group_of_its_role(role):
    user = StaffFactory(role=role)
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == [role]
    assert roles.role_of(user) == role


@pytest.mark.django_db
def test_an_unknown_role_is_refused_by_name():
    with pytest.raises(ValidationError) as error:
        services.create_staff_user(
            actor=None, username="x", email="x@example.com", password=None, role="Supervisor"
        )
    assert "Unknown role 'Supervisor'" in str(error.value.message_dict["role"])


@pytest.mark.django_db
def test_a_taken_username_and_a_weak_password_are_refused_by_name():
    StaffFactory(username="taken")
    with pytest.raises(ValidationError) as taken:
        services.create_customer(actor=None, username="Taken", email="t@example.com")
    assert "already exists" in taken.value.message_dict["username"][0]
    with pytest.raises(ValidationError) as weak:
        services.create_customer(
            actor=None, username="fresh", email="f@example.com", password="password"
        )
    assert any("too common" in message for message in weak.value.message_dict["password"])


@pytest.mark.django_db
def test_a_password_hash_replaces_the_password_but_must_be_a_hash():
    from django.contrib.auth.hashers import make_password

    user = services.create_customer(
        actor=None,
        username="hashed",
        email="h@example.com",
        password_hash=make_password("pass-phrase-2026"),
    )
    assert user.check_password("pass-phrase-2026")
    with pytest.raises(ValidationError, match="not in a known format"):
        services.create_customer(
            actor=None, username="h2", email="h2@example.com", password_hash="plain"
        )
    with pytest.raises(ValidationError, match="not both"):
        services.create_customer(
            actor=None,
            username="h3",
            email="h3@example.com",
            password="x",
            password_hash=user.password,
        )


@pytest.mark.django_db
def test_a_flushed_database_gets_its_groups_back_when_a_staff_user_is_created():
    Group.objects.filter(name__in=roles.ROLES).delete()
    user = StaffFactory(role=roles.OPS)
    assert user.groups.get().name == roles.OPS
    assert Group.objects.filter(name__in=roles.ROLES).count() == len(roles.ROLES)


# --- the sidebar follows the permissions -----------------------------------------------------------


ALL_SECTIONS_BUILT = URLConf(*(entry.url for entry in NAVIGATION if entry.url != "/admin/"))


def sidebar_labels(client, user) -> list[str]:
    client.force_login(user)
    html = client.get("/admin/").content.decode()
    nav = re.search(r'data-testid="sidebar-nav">(.*?)</ul>', html, re.S).group(1)
    return re.findall(r"<span>([^<]+)</span></a>", nav)


@pytest.mark.django_db
@pytest.mark.parametrize("role", list(STAFF_ROLE_NAMES))
def test_sidebar_shows_the_sections_of_the_role(client, settings, role):
    settings.ROOT_URLCONF = ALL_SECTIONS_BUILT
    user = role_user(role)
    # Sections whose permission no model defines yet cannot be granted to anyone so far.
    defined = {
        entry.label
        for entry in NAVIGATION
        if entry.permission is None
        or Permission.objects.filter(
            content_type__app_label=entry.permission.split(".")[0],
            codename=entry.permission.split(".")[1],
        ).exists()
    }
    assert sidebar_labels(client, user) == [label for label in SIDEBAR[role] if label in defined]


@pytest.mark.django_db
def test_jobs_is_shown_to_ops_and_admin_only(client, settings):
    # adminsite.view_jobs exists today, so this difference between roles is visible already.
    settings.ROOT_URLCONF = ALL_SECTIONS_BUILT
    seen = {role: "Jobs" in sidebar_labels(client, role_user(role)) for role in STAFF_ROLE_NAMES}
    assert seen == {"admin": True, "lead": False, "agent": False, "ops": True}
