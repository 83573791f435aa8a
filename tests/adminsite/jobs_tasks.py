"""Tasks for the background job tests: one that fails, one that blocks until released, one that
succeeds, and one that ignores its soft time limit. Registered on the project's Celery app, run
in-process through Celery's tracer (``task.apply()``), so the recording signals and the overlap
lock act on them as on any task; a test worker loads them with ``--include``."""

from __future__ import annotations

import threading
import time

from celery.exceptions import SoftTimeLimitExceeded

from adminsite.celery import app

release = threading.Event()
started = threading.Event()


class JobBoomError(RuntimeError):
    pass


@app.task(name="tests.jobs.fail", time_limit=10, soft_time_limit=5, max_retries=0)
def failing_job(reason: str = "boom") -> None:
    raise JobBoomError(reason)


@app.task(name="tests.jobs.block", time_limit=30, soft_time_limit=20, max_retries=0)
def blocking_job() -> str:
    started.set()
    if not release.wait(20):
        raise TimeoutError("the test never released the job")
    return "done"


@app.task(name="tests.jobs.ok", time_limit=10, soft_time_limit=5, max_retries=0)
def ok_job(secret_token: str = "", n: int = 0) -> int:
    return n


@app.task(name="tests.jobs.stubborn", time_limit=2, soft_time_limit=1, max_retries=0)
def stubborn_job() -> None:
    """Ignores its soft time limit, as a job stuck in a C call does, until the pool kills it at
    the hard limit."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            continue


NAMES = ("tests.jobs.fail", "tests.jobs.block", "tests.jobs.ok", "tests.jobs.stubborn")


def forget() -> None:
    """Clear what Redis keeps about jobs: every job's failure streak and last run (other tests'
    real tasks, a failed audit verification say, leave theirs), and the test jobs' locks and
    sampling marks. It outlives a test's database rollback; the keys carry this test run's own
    prefix, so nothing outside the run is touched."""
    from adminsite import jobs

    client = jobs.redis_client()
    client.delete(jobs.streak_key(), jobs.last_run_key())
    client.delete(*(jobs.lock_key(name) for name in NAMES))
    client.delete(*(jobs._key(f"sample:{name}") for name in NAMES))
