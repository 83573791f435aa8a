"""Writes of the background jobs console: "run now" and the retention of run records."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from celery import uuid
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from adminsite import jobs
from adminsite.models import JobRun
from adminsite.users import user_label
from audit.services import record

PURGE_BATCH = 10_000


class UnknownJobError(ValueError):
    """The name is not a periodic job of the beat schedule; the message names it."""


def request_run(*, actor, task_name: str) -> str:
    """Queue one run of the periodic job ``task_name`` now, on behalf of ``actor`` (a user, or
    None from the command line); returns the
    task id. Audited as ``job.run_requested``; the task is sent once the audit entry commits.
    If the job is running already, this run is skipped by the overlap lock (and recorded so)."""
    if task_name not in jobs.periodic_task_names():
        raise UnknownJobError(f"{task_name[:200]!r} is not a periodic job of the beat schedule.")
    task_id = uuid()
    requested_by = (user_label(actor) or "manage.py jobs")[:150]
    with transaction.atomic():
        record(
            "job.run_requested",
            actor=actor,
            data={"task": task_name, "task_id": task_id},
        )
        transaction.on_commit(lambda: _send(task_name, task_id, requested_by))
    return task_id


def _send(task_name: str, task_id: str, requested_by: str) -> None:
    from adminsite.celery import app

    # A custom header reaches the worker as task.request.requested_by (see jobs._start).
    app.send_task(task_name, task_id=task_id, headers={"requested_by": requested_by})


def retention_cutoff(*, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.JOB_RUN_RETENTION_DAYS)


def purge_job_runs(
    *, now: datetime | None = None, progress: Callable[[int], object] | None = None
) -> int:
    """Delete run records older than JOB_RUN_RETENTION_DAYS, in batches of PURGE_BATCH rows so
    no statement holds many locks or runs long. Returns how many rows went; ``progress`` is
    called with each batch's count."""
    cutoff = retention_cutoff(now=now)
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {JobRun._meta.db_table} WHERE id IN ("  # noqa: S608 - our table name
                f"  SELECT id FROM {JobRun._meta.db_table} WHERE started_at < %s LIMIT %s)",
                [cutoff, PURGE_BATCH],
            )
            deleted = cursor.rowcount
        total += deleted
        if progress is not None:
            progress(deleted)
        if deleted < PURGE_BATCH:
            return total
