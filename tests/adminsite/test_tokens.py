"""API tokens: the create/revoke commands, Bearer authentication, and the ApiToken admin."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from adminsite import roles, services
from adminsite.models import ApiToken, hash_token

ME = "/api/admin/me"
TOKEN_SHAPE = re.compile(r"^ast_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def agent(db):
    return services.create_staff_user(
        actor=None,
        username="agent",
        email="agent@example.com",
        password=None,
        role=roles.SUPPORT_AGENT,
    )


@pytest.fixture
def admin_user(db):
    return services.create_staff_user(
        actor=None, username="boss", email="boss@example.com", password=None, role=roles.ADMIN
    )


@pytest.fixture
def customer(db):
    return services.create_customer(actor=None, username="carol", email="carol@example.com")


def bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def manage_py(*argv: str) -> subprocess.CompletedProcess:
    """The real ``manage.py`` in a child process, against this test database."""
    test_db = connection.settings_dict["NAME"]
    database_url = urlsplit(settings.DATABASE_URL)._replace(path=f"/{test_db}").geturl()
    return subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": settings.REDIS_URL},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- create_api_token --------------------------------------------------------------------


def test_create_api_token_prints_only_the_token_and_stores_its_hash(agent):
    out = io.StringIO()
    call_command("create_api_token", "agent", "--name", "ci", stdout=out)

    raw = out.getvalue()
    assert raw.endswith("\n") and raw.count("\n") == 1
    raw = raw.strip()
    assert TOKEN_SHAPE.match(raw)
    token = ApiToken.objects.get(user=agent)
    assert token.name == "ci"
    assert token.prefix == raw[:12]
    assert token.token_hash == hash_token(raw)
    assert not ApiToken.objects.filter(token_hash=raw).exists()
    assert token.revoked_at is None and token.last_used_at is None


def test_each_create_makes_a_new_distinct_token(agent):
    first, second = io.StringIO(), io.StringIO()
    call_command("create_api_token", "agent", stdout=first)
    call_command("create_api_token", "agent", stdout=second)
    assert first.getvalue() != second.getvalue()
    assert ApiToken.objects.filter(user=agent).count() == 2


def test_create_api_token_refuses_unknown_and_inactive_users(agent):
    with pytest.raises(CommandError, match=re.escape("No user named 'nobody'.")):
        call_command("create_api_token", "nobody", stdout=io.StringIO())
    get_user_model().objects.filter(pk=agent.pk).update(is_active=False)
    with pytest.raises(CommandError, match=re.escape("User 'agent' is inactive")):
        call_command("create_api_token", "agent", stdout=io.StringIO())
    assert not ApiToken.objects.exists()


def test_create_api_token_rejects_an_overlong_name(agent):
    with pytest.raises(CommandError, match="--name must be at most 100 characters, got 101"):
        call_command("create_api_token", "agent", "--name", "n" * 101, stdout=io.StringIO())
    assert not ApiToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_manage_py_create_api_token_end_to_end(agent):
    """As a script calls it: stdout is the token alone (``TOKEN=$(...)``), the token then
    authenticates; an unknown or inactive user exits 1 with the reason on stderr."""
    result = manage_py("create_api_token", "agent", "--name", "from-shell")
    assert result.returncode == 0, result.stderr
    raw = result.stdout
    assert TOKEN_SHAPE.match(raw.rstrip("\n")) and raw.count("\n") == 1
    response = Client().get(ME, **bearer(raw.strip()))
    assert response.status_code == 200
    assert response.json()["username"] == "agent"
    assert ApiToken.objects.get(user=agent).name == "from-shell"

    missing = manage_py("create_api_token", "ghost")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert "No user named 'ghost'." in missing.stderr

    get_user_model().objects.filter(pk=agent.pk).update(is_active=False)
    inactive = manage_py("create_api_token", "agent")
    assert inactive.returncode == 1
    assert inactive.stdout == ""
    assert "User 'agent' is inactive" in inactive.stderr
    assert ApiToken.objects.filter(user=agent).count() == 1


# --- revoke_api_token --------------------------------------------------------------------


def test_revoke_by_prefix(agent):
    token, raw = services.create_api_token(actor=None, user=agent, name="laptop")
    out = io.StringIO()
    call_command("revoke_api_token", token.prefix, "--yes", stdout=out)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert f"Revoked 1 token(s): {token.prefix}… (agent)" in out.getvalue()
    assert Client().get(ME, **bearer(raw)).status_code == 401


def test_revoke_all_of_a_users_tokens(agent, customer):
    services.create_api_token(actor=None, user=agent)
    services.create_api_token(actor=None, user=agent)
    kept, _ = services.create_api_token(actor=None, user=customer)
    call_command("revoke_api_token", "--user", "agent", "--yes", stdout=io.StringIO())
    assert not ApiToken.objects.filter(user=agent, revoked_at__isnull=True).exists()
    kept.refresh_from_db()
    assert kept.revoked_at is None


def test_revoke_without_yes_and_without_a_terminal_refuses(agent, monkeypatch):
    token, _ = services.create_api_token(actor=None, user=agent)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="pass --yes to confirm"):
        call_command("revoke_api_token", token.prefix, stdout=io.StringIO())
    token.refresh_from_db()
    assert token.revoked_at is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ast_missing0"], "No token has the prefix 'ast_missing0'."),
        (["--user", "nobody"], "No user named 'nobody'."),
        ([], "Name the tokens either by PREFIX or with --user USERNAME"),
    ],
)
def test_revoke_errors_name_the_problem(db, argv, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("revoke_api_token", *argv, "--yes", stdout=io.StringIO())


# --- Bearer authentication ---------------------------------------------------------------


def test_valid_token_authenticates(agent, django_assert_max_num_queries):
    _token, raw = services.create_api_token(actor=None, user=agent)
    # token+user, last_used_at, groups
    with django_assert_max_num_queries(3):
        response = Client().get(ME, **bearer(raw))
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "agent"
    assert body["authMethod"] == "token"
    assert body["roles"] == [roles.SUPPORT_AGENT]


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        ("Bearer ast_thisIsNotARealTokenAtAll", "Invalid token."),
        ("Bearer", "Authorization header must be 'Bearer <token>'."),
        ("Bearer two parts", "Authorization header must be 'Bearer <token>'."),
    ],
)
def test_wrong_token_is_401(agent, header, detail):
    services.create_api_token(actor=None, user=agent)
    response = Client().get(ME, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response["WWW-Authenticate"] == "Bearer"


def test_missing_token_is_401(db):
    response = Client().get(ME)
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_revoked_token_is_401(agent):
    token, raw = services.create_api_token(actor=None, user=agent)
    assert Client().get(ME, **bearer(raw)).status_code == 200
    services.revoke_api_token(actor=None, token=token)
    response = Client().get(ME, **bearer(raw))
    assert response.status_code == 401
    assert response.json() == {"detail": "Token has been revoked."}
    assert response["WWW-Authenticate"] == "Bearer"


def test_inactive_users_token_is_401(agent):
    _token, raw = services.create_api_token(actor=None, user=agent)
    get_user_model().objects.filter(pk=agent.pk).update(is_active=False)
    response = Client().get(ME, **bearer(raw))
    assert response.status_code == 401
    assert response.json() == {"detail": "User is inactive."}


def test_customer_token_is_403_on_admin_api(customer):
    _token, raw = services.create_api_token(actor=None, user=customer)
    response = Client().get(ME, **bearer(raw))
    assert response.status_code == 403
    assert response.json() == {"detail": "Staff access is required."}


def test_last_used_at_is_stamped_at_most_once_a_minute(agent, django_assert_num_queries):
    token, raw = services.create_api_token(actor=None, user=agent)
    client = Client()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        assert client.get(ME, **bearer(raw)).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == start

    # Within the minute: no write (token+user, groups).
    with (
        time_machine.travel(start + timedelta(seconds=30), tick=False),
        django_assert_num_queries(2),
    ):
        assert client.get(ME, **bearer(raw)).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == start

    later = start + timedelta(minutes=5)
    with time_machine.travel(later, tick=False):
        assert client.get(ME, **bearer(raw)).status_code == 200
    token.refresh_from_db()
    assert token.last_used_at == later


# --- ApiToken admin ----------------------------------------------------------------------


def test_admin_lists_tokens_without_hashes(admin_user, agent, customer):
    for user in (agent, customer, admin_user):
        services.create_api_token(actor=None, user=user, name=f"{user.username}-laptop")
    revoked, _ = services.create_api_token(actor=None, user=agent, name="old")
    services.revoke_api_token(actor=None, token=revoked)
    client = Client()
    client.force_login(admin_user)

    url = reverse("admin:adminsite_apitoken_changelist")
    with CaptureQueriesContext(connection) as few_rows:
        response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    for column in ("Prefix", "User", "Name", "Created at", "Last used at", "Revoked"):
        assert column in html
    for token in ApiToken.objects.all():
        assert token.prefix in html
        assert token.token_hash not in html
    assert "Revoke selected tokens" in html
    assert "Delete selected" not in html

    # The row count does not change the number of queries.
    for n in range(10):
        services.create_api_token(actor=None, user=agent, name=f"more-{n}")
    with CaptureQueriesContext(connection) as more_rows:
        assert client.get(url).status_code == 200
    assert len(more_rows) == len(few_rows) <= 12

    active = client.get(url, {"state": "active"}).content.decode()
    assert revoked.prefix not in active


def test_admin_cannot_add_or_edit_tokens(admin_user, agent):
    token, _ = services.create_api_token(actor=None, user=agent, name="laptop")
    client = Client()
    client.force_login(admin_user)
    assert client.get(reverse("admin:adminsite_apitoken_add")).status_code == 403

    change_url = reverse("admin:adminsite_apitoken_change", args=[token.pk])
    page = client.get(change_url)
    assert page.status_code == 200
    html = page.content.decode()
    assert token.prefix in html
    assert token.token_hash not in html
    assert 'name="name"' not in html  # read-only: no form inputs for the fields

    client.post(change_url, {"name": "renamed", "user": admin_user.pk})
    token.refresh_from_db()
    assert token.name == "laptop"
    assert token.user_id == agent.pk

    delete = client.post(
        reverse("admin:adminsite_apitoken_delete", args=[token.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists()


def test_admin_revoke_action(admin_user, agent):
    first, first_raw = services.create_api_token(actor=None, user=agent, name="one")
    second, _ = services.create_api_token(actor=None, user=agent, name="two")
    untouched, untouched_raw = services.create_api_token(actor=None, user=agent, name="three")
    services.revoke_api_token(actor=None, token=second)
    client = Client()
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:adminsite_apitoken_changelist"),
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 token(s). 1 already revoked." in response.content.decode()
    first.refresh_from_db()
    untouched.refresh_from_db()
    assert first.revoked_at is not None
    assert untouched.revoked_at is None
    assert Client().get(ME, **bearer(first_raw)).status_code == 401
    assert Client().get(ME, **bearer(untouched_raw)).status_code == 200


def test_staff_without_token_permissions_cannot_see_tokens(agent):
    client = Client()
    client.force_login(agent)
    assert client.get(reverse("admin:adminsite_apitoken_changelist")).status_code == 403
