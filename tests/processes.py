"""Real background processes for tests: a Celery worker and private Redis servers.

The fixtures in ``tests/conftest.py`` wrap these; tests import ``wait_until`` from here to poll
for what another process does (a worker finishing a task), since it cannot be frozen in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from adminsite import devservices

BASE_DIR = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:.0f} s")
        time.sleep(0.05)


def worker_database_url() -> str:
    """settings.DATABASE_URL pointed at the database pytest-django created for this process
    (its name carries the xdist suffix, e.g. test_adminsite_gw1)."""
    from django.conf import settings
    from django.db import connection

    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path=f"/{connection.settings_dict['NAME']}"))


# Loaded here, in the parent: after fork, in a process with other threads (live server,
# Playwright), the child must not take the dynamic loader's lock.
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL, so
    an interrupted run never leaves a server or worker behind."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop_process(proc: subprocess.Popen, *, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        # The process leads its own group (start_new_session): take its children with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"


class RedisServer:
    """A Redis of its own on a free port, from the same binary as the embedded one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = devservices.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = devservices.redis_command(
            port=self.port, directory=self.directory, daemonize=False
        )
        self._proc = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            command, start_new_session=True, preexec_fn=_die_with_parent
        )
        wait_until(self.running, timeout=10, what=f"Redis on port {self.port} answering PING")
        return self

    def running(self) -> bool:
        return (
            self._proc is not None
            and self._proc.poll() is None
            and devservices.redis_answers(self.port)
        )

    def stop(self) -> None:
        if self._proc is not None:
            _stop_process(self._proc, timeout=10)


class CeleryWorker:
    """``celery -A adminsite worker`` in a subprocess, on the given database and Redis.

    It consumes only tasks sent with this test process's Redis key prefix, and answers pings
    addressed to its own node name, so parallel test runs on one Redis stay apart.
    """

    include: tuple[str, ...] = ()  # more task modules to load, such as tests' own tasks

    def __init__(
        self, *, database_url: str, redis_url: str, key_prefix: str, log_path: Path
    ) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.log_path = log_path
        self.nodename = f"{key_prefix.rstrip(':') or 'tests'}-{os.getpid()}@localhost"
        self._proc: subprocess.Popen | None = None
        self._control = None

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # xdist's variables would make the worker's settings pick another key prefix.
            if not key.startswith(("PYTEST_", "DJANGO_SETTINGS_MODULE"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="adminsite.settings",
            ADMINSITE_TESTING="1",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            REDIS_KEY_PREFIX=self.key_prefix,
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, *, timeout: float = 60.0) -> CeleryWorker:
        command = [
            sys.executable, "-m", "celery", "-A", "adminsite", "worker",
            "--loglevel=INFO", "--hostname", self.nodename,
            # Two prefork children, as in production, so tasks that contend for rows really run
            # side by side; gossip, mingle and heartbeats only slow the start for one worker.
            "--pool=prefork", "--concurrency=2",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            *(f"--include={module}" for module in self.include),
        ]  # fmt: skip
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - fixed command line
                command,
                cwd=BASE_DIR,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"Celery worker {self.nodename} did not answer a ping; its log:\n{_log_tail(self.log_path)}"
                )
        return self

    def ping(self) -> bool:
        # A small app of its own: control commands go out through the app's producer pool, so
        # the project app would publish to this process's broker, not necessarily the worker's.
        if self._control is None:
            from celery import Celery

            options = {"global_keyprefix": self.key_prefix} if self.key_prefix else {}
            self._control = Celery(
                "ping",
                broker=self.redis_url,
                broker_transport_options=options,
                set_as_current=False,
            )
        replies = self._control.control.ping(destination=[self.nodename], timeout=0.5)
        return any(self.nodename in reply for reply in replies)

    def log(self) -> str:
        return _log_tail(self.log_path, lines=200)

    def stop(self) -> None:
        # SIGTERM is Celery's warm shutdown: running tasks finish, then connections close, so
        # the test database can be dropped right after.
        if self._proc is not None:
            _stop_process(self._proc, timeout=30)
        if self._control is not None:
            self._control.close()
