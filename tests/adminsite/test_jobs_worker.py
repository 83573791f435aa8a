"""Background jobs against real worker processes: runs recorded by the worker, the overlap lock
skipping a second run, and a worker killed mid-task whose task runs again, with its effect once."""

from __future__ import annotations

import os
import signal

import pytest
from aiosmtpd.controller import Controller
from celery import Celery
from django.conf import settings
from django.db import connection, transaction
from django.test import Client

from adminsite import devservices, jobs, jobs_services
from adminsite.models import JobRun
from audit.models import AuditEntry
from impersonation.models import ImpersonationSession
from tests.factories import CustomerFactory, StaffFactory
from tests.impersonation.helpers import start
from tests.processes import CeleryWorker, wait_until, worker_database_url
from tests.roles import STAFF_ROLE_NAMES

pytestmark = pytest.mark.django_db(transaction=True)

PURGE = "adminsite.purge_job_runs"


def finished(task_id: str, outcome: str = "success"):
    return lambda: JobRun.objects.filter(task_id=task_id, outcome=outcome).first()


def test_the_worker_records_a_requested_run_with_its_worker_queue_and_wait(celery_worker):
    ops = StaffFactory(
        username="ops-worker", role=STAFF_ROLE_NAMES["ops"], first_name="Ola", last_name="Berg"
    )
    task_id = jobs_services.request_run(actor=ops, task_name=PURGE)
    run = wait_until(finished(task_id), timeout=30, what="the requested run recorded")
    assert run.task_name == PURGE
    assert run.requested_by == "Ola Berg"
    assert run.worker == celery_worker.nodename
    assert run.queue == "celery"
    assert run.queued_at is not None and run.queued_at <= run.started_at
    assert run.finished_at >= run.started_at and run.duration_ms is not None
    assert AuditEntry.objects.filter(event="job.run_requested", actor_id=ops.pk).count() == 1


def test_a_periodic_job_is_skipped_while_a_run_holds_its_lock(celery_worker):
    from adminsite.celery import app

    client = jobs.redis_client()
    # As if a run had started on another worker and were still going.
    client.set(jobs.lock_key(PURGE), "another-worker", ex=60)
    try:
        skipped = app.send_task(PURGE)
        run = wait_until(
            finished(skipped.id, "skipped"), timeout=30, what="the run recorded as skipped"
        )
        assert run.worker == celery_worker.nodename
    finally:
        client.delete(jobs.lock_key(PURGE))
    again = app.send_task(PURGE)
    wait_until(finished(again.id), timeout=30, what="the next run, with the lock free")
    assert client.exists(jobs.lock_key(PURGE)) == 0


# --- a worker killed mid-task ------------------------------------------------------------------


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 Message accepted"


class _Worker(CeleryWorker):
    """A worker of this test's own, with settings of its own in the environment."""

    def __init__(self, *, extra_env: dict[str, str], **kwargs):
        super().__init__(**kwargs)
        self.extra_env = extra_env

    def environment(self) -> dict[str, str]:
        return {**super().environment(), **self.extra_env}

    def kill(self) -> None:
        """SIGKILL to the worker and its pool children, as when a machine dies."""
        os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(10)


@pytest.fixture
def mailbox():
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=devservices.free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_a_task_of_a_killed_worker_runs_again_and_its_effect_happens_once(mailbox, tmp_path):
    box, smtp_port = mailbox
    lead = StaffFactory(username="lead-kill", role=STAFF_ROLE_NAMES["lead"])
    customer = CustomerFactory(username="kill-customer", email="kill-customer@example.com")
    staff = Client()
    staff.force_login(lead)
    assert start(staff, customer).status_code == 303
    session = ImpersonationSession.objects.get(customer=customer)

    # Workers and a producer on a key prefix of this test's own, so the session's worker never
    # sees the task. A one-second visibility timeout: the second worker takes back, when it
    # starts, what the first left unacknowledged.
    prefix = f"{settings.REDIS_KEY_PREFIX}kill{os.getpid()}:"
    options = {
        "database_url": worker_database_url(),
        "redis_url": settings.REDIS_URL,
        "key_prefix": prefix,
        "extra_env": {
            "CELERY_VISIBILITY_TIMEOUT": "1",
            "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
        },
    }
    producer = Celery(
        "kill-test",
        broker=settings.REDIS_URL,
        broker_transport_options={"global_keyprefix": prefix},
        set_as_current=False,
    )
    first = _Worker(log_path=tmp_path / "first.log", **options).start()
    second = None
    try:
        # The test holds the session row, so the task blocks inside its service (which locks
        # that row first) until the worker is killed.
        with transaction.atomic():
            ImpersonationSession.objects.select_for_update().get(pk=session.pk)
            result = producer.send_task("impersonation.notify_customer", args=[session.pk])
            wait_until(
                lambda: JobRun.objects.filter(task_id=result.id, outcome="running").exists(),
                timeout=30,
                what="the first worker to start the task",
            )
            wait_until(_waiting_on_a_lock, timeout=15, what="the task to block on the row")
            first.kill()
        assert not box.messages
        assert ImpersonationSession.objects.get(pk=session.pk).customer_notified_at is None

        second = _Worker(log_path=tmp_path / "second.log", **options).start()
        done = wait_until(
            finished(result.id), timeout=60, what="the task to run again on the second worker"
        )
        assert done.worker == second.nodename
        outcomes = sorted(
            JobRun.objects.filter(task_id=result.id).values_list("outcome", flat=True)
        )
        assert outcomes == ["lost", "success"]

        # A duplicate delivery of the same task finds the work done and does nothing.
        duplicate = producer.send_task("impersonation.notify_customer", args=[session.pk])
        wait_until(finished(duplicate.id), timeout=30, what="the duplicate to run")
    finally:
        first.stop()
        if second is not None:
            second.stop()
        producer.close()

    assert [envelope.rcpt_tos for envelope in box.messages] == [[customer.email]]
    assert ImpersonationSession.objects.get(pk=session.pk).customer_notified_at is not None
    assert AuditEntry.objects.filter(event="impersonation.customer_notified").count() == 1


# --- a task killed at its hard time limit ------------------------------------------------------


def test_a_run_killed_at_its_hard_time_limit_is_closed_as_a_failure(tmp_path):
    from tests.adminsite.jobs_tasks import forget

    # A worker of its own that knows the tests' tasks, on a key prefix of its own.
    prefix = f"{settings.REDIS_KEY_PREFIX}limit{os.getpid()}:"
    worker = _Worker(
        database_url=worker_database_url(),
        redis_url=settings.REDIS_URL,
        key_prefix=prefix,
        log_path=tmp_path / "worker.log",
        extra_env={},
    )
    worker.include = ("tests.adminsite.jobs_tasks",)
    producer = Celery(
        "limit-test",
        broker=settings.REDIS_URL,
        broker_transport_options={"global_keyprefix": prefix},
        set_as_current=False,
    )
    worker.start()
    try:
        # It shrugs off its soft limit (1 s); the pool kills its child at the hard one (2 s).
        result = producer.send_task("tests.jobs.stubborn")
        run = wait_until(finished(result.id, "failure"), timeout=30, what="the killed run closed")
        assert run.error.startswith("TimeLimitExceeded"), run.error
        assert run.worker == worker.nodename
        assert run.finished_at >= run.started_at
        assert list(JobRun.objects.filter(task_id=result.id).values_list("outcome", flat=True)) == [
            "failure"
        ]
        # Counted in the failure streak, in the worker's keys: just after the run is closed
        # (the process that closes it counts it next).
        streaks = prefix + jobs.streak_key().removeprefix(settings.REDIS_KEY_PREFIX)
        wait_until(
            lambda: jobs.redis_client().hget(streaks, "tests.jobs.stubborn") is not None,
            timeout=10,
            what="the failure streak counted",
        )
        # The pool replaced the killed child: the worker goes on running tasks.
        after = producer.send_task("tests.jobs.ok", kwargs={"n": 7})
        wait_until(finished(after.id), timeout=30, what="a run after the kill")
        # Counted once, not by both the child and the worker's main process.
        assert jobs.redis_client().hget(streaks, "tests.jobs.stubborn") == b"1"
    finally:
        worker.stop()
        producer.close()
        client = jobs.redis_client()
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        forget()
