"""Fixtures for the audit trail's tests: a user per role, sealing, tampering by a superuser,
and running manage.py against this test database."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection

from adminsite import roles
from audit import chain
from tests.factories import CustomerFactory, StaffFactory


@pytest.fixture
def admin_user(db):
    return StaffFactory(username="ada", role=roles.ADMIN, first_name="Ada", last_name="Admin")


@pytest.fixture
def lead(db):
    return StaffFactory(username="lee", role=roles.SUPPORT_LEAD, first_name="Lee", last_name="Lead")


@pytest.fixture
def agent(db):
    return StaffFactory(
        username="sam", role=roles.SUPPORT_AGENT, first_name="Sam", last_name="Agent"
    )


@pytest.fixture
def ops(db):
    return StaffFactory(username="opal", role=roles.OPS)


@pytest.fixture
def customer(db):
    return CustomerFactory(
        username="carol", first_name="Carol", last_name="Customer", email="carol@example.com"
    )


@pytest.fixture
def archive_dir(tmp_path, settings):
    settings.AUDIT_ARCHIVE_DIR = str(tmp_path / "archive")
    return tmp_path / "archive"


def seal() -> int:
    """What the after-commit hook does, for tests inside one transaction (where on_commit
    hooks never run)."""
    return chain.seal()


def as_superuser(sql: str, params=None) -> None:
    """Run SQL with the append-only guards switched off, as someone tampering with the table
    directly would (the test database user is a superuser)."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")
        cursor.execute("ALTER TABLE audit_chainlink DISABLE TRIGGER audit_link_append_only")
        cursor.execute(
            "ALTER TABLE audit_auditcheckpoint DISABLE TRIGGER audit_checkpoint_append_only"
        )
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_entry_append_only")
            cursor.execute("ALTER TABLE audit_chainlink ENABLE TRIGGER audit_link_append_only")
            cursor.execute(
                "ALTER TABLE audit_auditcheckpoint ENABLE TRIGGER audit_checkpoint_append_only"
            )


def child_database_url() -> str:
    return (
        urlsplit(settings.DATABASE_URL)
        ._replace(path=f"/{connection.settings_dict['NAME']}")
        .geturl()
    )


def child_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="adminsite.settings",
        ADMINSITE_TESTING="1",
        DATABASE_URL=child_database_url(),
        REDIS_URL=settings.REDIS_URL,
        REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
        AUDIT_CHECKPOINT_KEY=settings.AUDIT_CHECKPOINT_KEY,
        **extra,
    )
    return env


def manage_py(*argv: str, **env: str) -> subprocess.CompletedProcess:
    """The real ``manage.py`` in a child process, against this test database (committed data
    only: use a transactional test)."""
    return subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=settings.BASE_DIR,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
