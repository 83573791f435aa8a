"""Fixtures every app's tests share. App-specific fixtures live in each folder's conftest.py.

The settings recognise a pytest run by themselves (``settings.TESTING``: fast password hashing,
a Redis key prefix of this process's own), because pytest-django imports them before this file.
"""

from __future__ import annotations

import warnings

import pytest
from django.conf import settings
from django.db import connection

from tests.processes import CeleryWorker, RedisServer, worker_database_url

# One Playwright session for the whole run: a second sync_playwright() in the same thread fails.
pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test databases, and at the end no other session left on them.

    A subprocess a test started (a server, a worker, ``manage.py``) that is still connected
    would make dropping the test database fail, and the next run with the same name with it.
    Such sessions are ended here, with a warning naming them so the leak can be fixed.
    """
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid), pid, left(query, 120) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        stray = [f"pid {pid}: {query!r}" for _ended, pid, query in cursor.fetchall()]
    connection.close()
    if stray:
        warnings.warn(
            f"sessions still connected to {connection.settings_dict['NAME']} at the end were ended: "
            + "; ".join(stray),
            pytest.PytestWarning,
            stacklevel=1,
        )


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, tmp_path_factory):
    """A real Celery worker on the test database and the test Redis, for the whole session.

    It runs in another process and sees only committed rows: tests that give it work need
    ``transactional_db`` (or ``@pytest.mark.django_db(transaction=True)``). Wait for its effects
    with ``tests.processes.wait_until``; ``celery_worker.log()`` shows what it printed.
    """
    log_path = tmp_path_factory.mktemp("celery") / "worker.log"
    worker = CeleryWorker(
        database_url=worker_database_url(),
        redis_url=settings.REDIS_URL,
        key_prefix=settings.REDIS_KEY_PREFIX,
        log_path=log_path,
    ).start()
    yield worker
    worker.stop()


@pytest.fixture
def redis_server(tmp_path):
    """A throwaway Redis of this test's own, for tests that stop it or need it empty:
    ``redis_server.url``, ``redis_server.stop()``."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
