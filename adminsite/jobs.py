"""Background jobs: the record of every task run, and the overlap lock of periodic tasks.

Run records come from Celery's signals (connected by :func:`connect`, from
``AdminsiteConfig.ready``), so every task is covered whatever module defines it:

- ``before_task_publish`` stamps the time a task was queued into its message headers;
- ``task_prerun`` INSERTs a ``running`` row (one statement);
- ``task_retry`` / ``task_failure`` note the error and traceback in process memory;
- ``task_postrun`` UPDATEs the row with the outcome and duration (one statement), updates the
  job's failure streak in Redis and reports it as the metric ``job_consecutive_failures``
  (tag ``job``), on which the alerting module's rule "Background job failing" fires at 3.

Tasks scheduled more often than once a minute (``monitoring.flush_metrics`` runs every 2 s) are
sampled rather than recorded run by run: 43,200 rows a day for one task would be most of the
table and say nothing new. Their failures, retries and skips are always kept, a success at
most once a minute per task (and always the success that ends a failure streak), written with
a single INSERT when the run ends. Whatever was recorded, every run updates the job's entry in
the ``last run`` hash in Redis (one HSET), so the jobs page shows each job's true last run.

The overlap lock: every periodic task (one named in the beat schedule) runs under a Redis lock
named after it, taken with SET NX and an expiry of the task's hard time limit plus a margin,
so a worker that died holding it blocks the job for at most that long. A run that finds the
lock taken does nothing and is recorded as ``skipped``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import redis
from celery import Task
from celery.schedules import maybe_schedule
from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
)
from django.conf import settings

logger = logging.getLogger(__name__)

FAILURE_METRIC = "job_consecutive_failures"
# Tasks scheduled at least this often are sampled (see the module docstring).
FREQUENT_SECONDS = 60
# A frequent task's successful run is recorded at most once in this many seconds.
SAMPLE_SECONDS = 60
# The overlap lock outlives the task's hard time limit by this much: the worker kills the task
# at its limit, and the margin covers the kill and the clocks of two machines.
LOCK_MARGIN_SECONDS = 30
MAX_ARGS = 300
MAX_ERROR = 500
MAX_TRACEBACK = 20_000
# A failed run that reported no error: it was ended from outside (terminated at its hard time
# limit, or revoked with terminate) before it could say why.
TERMINATED = "Terminated before the task could report an error."

_SENSITIVE = re.compile(r"(password|passwd|secret|token|api_key|authorization|card)", re.I)


# --- Redis keys -------------------------------------------------------------------------------


def _key(name: str) -> str:
    return f"{settings.REDIS_KEY_PREFIX}adminsite:jobs:{name}"


def last_run_key() -> str:
    return _key("last-run")


def streak_key() -> str:
    return _key("failure-streak")


def lock_key(task_name: str) -> str:
    return _key(f"lock:{task_name}")


@lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def redis_client() -> redis.Redis:
    # One pool per process and URL; redis-py opens fresh connections in a forked child.
    return _client_for(settings.REDIS_URL)


def format_duration(ms: int | None) -> str:
    """120 ms, 3.4 s, 2 min 5 s, 1 h 4 min."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


# --- the beat schedule ------------------------------------------------------------------------


def beat_schedule() -> dict:
    from adminsite.celery import app

    return app.conf.beat_schedule or {}


def periodic_task_names() -> set[str]:
    return {entry["task"] for entry in beat_schedule().values()}


def interval_seconds(schedule) -> float | None:
    """The fixed interval of a schedule (timedelta or ``celery.schedules.schedule``), or None
    for a crontab or solar schedule."""
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, int | float):
        return float(schedule)
    run_every = getattr(schedule, "run_every", None)
    if isinstance(run_every, timedelta) and type(schedule).__name__ == "schedule":
        return run_every.total_seconds()
    return None


def frequent_task_names() -> set[str]:
    names = set()
    for entry in beat_schedule().values():
        seconds = interval_seconds(entry["schedule"])
        if seconds is not None and seconds < FREQUENT_SECONDS:
            names.add(entry["task"])
    return names


def as_schedule(schedule):
    from adminsite.celery import app

    return maybe_schedule(schedule, app=app)


# --- the overlap lock and the task base class -------------------------------------------------


def lock_ttl(task) -> int:
    from adminsite.celery import app

    limit = task.time_limit or task.soft_time_limit or app.conf.task_time_limit or 3600
    return int(limit) + LOCK_MARGIN_SECONDS


class JobTask(Task):
    """The base class of every task of the project (``Celery(task_cls=…)``).

    Periodic tasks take the overlap lock around their body; others run as they are.
    """

    # The safety options a task's decorator stated itself. Celery later copies its configured
    # defaults (task_time_limit…) onto tasks that set none, so this is taken at class creation.
    declared_options: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.declared_options = frozenset(
            option
            for option in ("time_limit", "soft_time_limit", "max_retries", "autoretry_for")
            if option in cls.__dict__
        )

    def __call__(self, *args, **kwargs):
        if self.name not in periodic_task_names():
            return self._body(*args, **kwargs)
        lock = redis_client().lock(lock_key(self.name), timeout=lock_ttl(self), blocking=False)
        if not lock.acquire():
            _skipped(self)
            logger.info(
                "job skipped: the previous run still holds its lock", extra={"job": self.name}
            )
            return None
        try:
            return self._body(*args, **kwargs)
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                # Expired past the time limit and perhaps taken by a newer run: not ours to free.
                logger.warning("job lock expired before the run ended", extra={"job": self.name})

    def _body(self, *args, **kwargs):
        # In a worker the request is already pushed (called_directly is False) and the body runs
        # as is; a direct call goes through Task.__call__, which pushes a request of its own.
        if not self.request.called_directly:
            return self.run(*args, **kwargs)
        return super().__call__(*args, **kwargs)


# --- recording runs ---------------------------------------------------------------------------


@dataclass
class _Run:
    name: str
    frequent: bool
    started_at: datetime
    started: float  # monotonic
    row_id: int | None = None
    skipped: bool = False
    error: str = ""
    traceback: str = ""
    fields: dict = field(default_factory=dict)


# task id -> the run in progress in this process (a prefork child runs one task at a time).
_runs: dict[str, _Run] = {}


def _skipped(task) -> None:
    run = _runs.get(task.request.id or "")
    if run is not None:
        run.skipped = True


def summarize_args(args, kwargs) -> str:
    """A short, readable summary of a task's arguments; values of secret-looking keyword
    arguments are masked (tasks take ids, but a caller may not)."""
    parts = [repr(arg) for arg in (args or ())]
    for key, value in (kwargs or {}).items():
        shown = "'***'" if _SENSITIVE.search(str(key)) else repr(value)
        parts.append(f"{key}={shown}")
    text = ", ".join(parts)
    return text if len(text) <= MAX_ARGS else text[: MAX_ARGS - 1] + "…"


def _header_time(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def on_before_publish(sender=None, headers=None, **kwargs):
    if isinstance(headers, dict):
        headers.setdefault("queued_at", time.time())


def on_prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **_):
    if task is None or task_id is None:
        return
    try:
        _start(task, task_id, args, kwargs)
    except Exception:
        # A run record is never worth failing the task for.
        logger.exception("could not record the start of a job run", extra={"job": task.name})


def _start(task, task_id: str, args, kwargs) -> None:
    from adminsite.models import JobRun

    request = task.request
    delivery = request.delivery_info or {}
    run = _Run(
        name=task.name,
        frequent=task.name in frequent_task_names(),
        started_at=datetime.now(UTC),
        started=time.monotonic(),
    )
    run.fields = {
        "task_id": task_id,
        "task_name": task.name[:200],
        "args_summary": summarize_args(args, kwargs),
        "queue": str(delivery.get("routing_key") or "")[:100],
        "worker": str(request.hostname or "")[:200],
        "requested_by": str(getattr(request, "requested_by", None) or "")[:150],
        "queued_at": _header_time(getattr(request, "queued_at", None)),
        "started_at": run.started_at,
        "retries": int(request.retries or 0),
    }
    _runs[task_id] = run
    if getattr(request, "redelivered", False) or delivery.get("redelivered"):
        # The broker handed this task out again: the worker that had it died mid-run.
        JobRun.objects.filter(task_id=task_id, outcome=JobRun.Outcome.RUNNING).update(
            outcome=JobRun.Outcome.LOST, error="The worker running it was lost."
        )
    if not run.frequent:
        run.row_id = JobRun.objects.create(outcome=JobRun.Outcome.RUNNING, **run.fields).pk


def on_retry(sender=None, request=None, reason=None, **_):
    run = _runs.get(getattr(request, "id", None) or "")
    if run is not None:
        run.error = str(reason)[:MAX_ERROR]


def on_failure(sender=None, task_id=None, exception=None, einfo=None, **_):
    error = f"{type(exception).__name__}: {exception}"[:MAX_ERROR]
    traceback = str(getattr(einfo, "traceback", "") or "")[-MAX_TRACEBACK:]
    run = _runs.get(task_id or "")
    if run is not None:
        run.error, run.traceback = error, traceback
        return
    # Sent by the worker's main process when it killed the task at its hard time limit: the
    # child that ran it never reaches task_postrun, so its row is closed here.
    try:
        _close_killed(sender, task_id, error, traceback)
    except Exception:
        logger.exception("could not record a killed job run", extra={"task_id": task_id})


def _close_killed(task, task_id: str | None, error: str, traceback: str) -> None:
    from adminsite.models import JobRun

    if not task_id:
        return
    runs = JobRun.objects.filter(task_id=task_id)
    closed = runs.filter(outcome=JobRun.Outcome.RUNNING).update(
        outcome=JobRun.Outcome.FAILURE,
        finished_at=datetime.now(UTC),
        error=error,
        traceback=traceback,
    )
    # The pool terminates the child before it kills it: a child that closed its run on the way
    # out could not say why; this process can.
    runs.filter(outcome=JobRun.Outcome.FAILURE, error=TERMINATED).update(
        error=error, traceback=traceback
    )
    name = getattr(task, "name", "")
    if closed and name:
        streak = redis_client().hincrby(streak_key(), name, 1)
        from monitoring.metrics import track_metric

        track_metric(FAILURE_METRIC, streak, tags={"job": name})


def on_postrun(sender=None, task_id=None, task=None, state=None, **_):
    run = _runs.pop(task_id or "", None)
    if run is None:
        return
    try:
        _finish(run, state)
    except Exception:
        logger.exception("could not record the end of a job run", extra={"job": run.name})


def outcome_of(state: str | None, *, skipped: bool) -> str:
    from adminsite.models import JobRun

    if state == "SUCCESS":
        return JobRun.Outcome.SKIPPED if skipped else JobRun.Outcome.SUCCESS
    if state == "RETRY":
        return JobRun.Outcome.RETRY
    if state == "IGNORED":  # the task raised celery.exceptions.Ignore: it chose not to run
        return JobRun.Outcome.SKIPPED
    return JobRun.Outcome.FAILURE


def _finish(run: _Run, state: str | None) -> None:
    from adminsite.models import JobRun

    outcome = outcome_of(state, skipped=run.skipped)
    finished_at = datetime.now(UTC)
    duration_ms = max(0, round((time.monotonic() - run.started) * 1000))
    error = run.error
    if outcome == JobRun.Outcome.FAILURE and not error:
        error = TERMINATED
    final = {
        "outcome": outcome,
        "finished_at": finished_at,
        "duration_ms": duration_ms,
        "error": error if outcome != JobRun.Outcome.SUCCESS else "",
        "traceback": run.traceback if outcome == JobRun.Outcome.FAILURE else "",
    }
    if run.row_id is not None:
        closed = JobRun.objects.filter(pk=run.row_id, outcome=JobRun.Outcome.RUNNING)
        if not closed.update(**final):
            return  # the worker's main process killed the run and closed it (and counted it)
        streak, _ = _update_redis(run, outcome, finished_at, duration_ms)
    else:
        streak, sampled = _update_redis(run, outcome, finished_at, duration_ms)
        if run.frequent and not sampled:
            return
        JobRun.objects.create(**run.fields, **final)
    from monitoring.metrics import track_metric

    track_metric(FAILURE_METRIC, streak, tags={"job": run.name})


def _update_redis(run: _Run, outcome: str, finished_at: datetime, duration_ms: int):
    """The job's last run and failure streak, in one round trip. Returns the streak after this
    run and whether a frequent task's success is to be recorded."""
    from adminsite.models import JobRun

    last = json.dumps(
        {
            "at": run.started_at.timestamp(),
            "finished": finished_at.timestamp(),
            "duration_ms": duration_ms,
            "outcome": outcome,
            "worker": run.fields.get("worker", ""),
        }
    )
    pipe = redis_client().pipeline(transaction=True)
    pipe.hset(last_run_key(), run.name, last)
    if outcome == JobRun.Outcome.SUCCESS:
        pipe.hget(streak_key(), run.name)
        pipe.hset(streak_key(), run.name, 0)
        if run.frequent:
            pipe.set(_key(f"sample:{run.name}"), 1, nx=True, ex=SAMPLE_SECONDS)
        results = pipe.execute()
        ended_streak = int(results[1] or 0) > 0
        sampled = bool(results[3]) if run.frequent else True
        # A run someone asked for from the jobs page is always recorded: they look for it.
        requested = bool(run.fields.get("requested_by"))
        return 0, sampled or ended_streak or requested
    if outcome == JobRun.Outcome.FAILURE:
        pipe.hincrby(streak_key(), run.name, 1)
        return int(pipe.execute()[1]), True
    pipe.hget(streak_key(), run.name)
    return int(pipe.execute()[1] or 0), True


def connect() -> None:
    before_task_publish.connect(on_before_publish, dispatch_uid="jobs.before_publish", weak=False)
    task_prerun.connect(on_prerun, dispatch_uid="jobs.prerun", weak=False)
    task_retry.connect(on_retry, dispatch_uid="jobs.retry", weak=False)
    task_failure.connect(on_failure, dispatch_uid="jobs.failure", weak=False)
    task_postrun.connect(on_postrun, dispatch_uid="jobs.postrun", weak=False)
