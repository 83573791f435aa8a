"""Reads of the background jobs console (/admin/jobs/ and the dashboard's Jobs panel).

The overview is three queries whatever the number of runs: the latest runs of every task (a
LATERAL join that walks each task's index for its newest TREND_RUNS rows), the failures of the
last 24 hours and the running rows (both from small partial indexes), plus two Redis reads
(the last-run hash and the failure streaks).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from celery.schedules import crontab
from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from adminsite import health, jobs
from adminsite.models import JobRun

TREND_RUNS = 20
RUNS_PAGE = 50
FAILURE_WINDOW = timedelta(hours=24)


# --- schedules in words -----------------------------------------------------------------------


def _plural(count: float, unit: str) -> str:
    count = int(count) if float(count).is_integer() else round(count, 1)
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def describe_interval(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        days = seconds // 86400
        return {1: "daily", 7: "weekly"}.get(int(days), _plural(days, "day"))
    if seconds >= 3600 and seconds % 3600 == 0:
        return "hourly" if seconds == 3600 else _plural(seconds / 3600, "hour")
    if seconds >= 60 and seconds % 60 == 0:
        return _plural(seconds / 60, "minute")
    return _plural(seconds, "second")


def _cron_field(schedule: crontab, name: str) -> str:
    return str(getattr(schedule, f"_orig_{name}", "*"))


def describe_crontab(schedule: crontab) -> str:
    minute, hour = _cron_field(schedule, "minute"), _cron_field(schedule, "hour")
    dom, moy, dow = (
        _cron_field(schedule, f) for f in ("day_of_month", "month_of_year", "day_of_week")
    )
    if minute.isdigit() and hour.isdigit() and (dom, moy) == ("*", "*"):
        at = f"{int(hour):02d}:{int(minute):02d} UTC"
        return f"daily at {at}" if dow == "*" else f"at {at} on days {dow} of the week"
    if minute.isdigit() and (hour, dom, moy, dow) == ("*", "*", "*", "*"):
        return f"hourly at minute {int(minute)}"
    return f"cron {minute} {hour} {dom} {moy} {dow}"


def describe_schedule(schedule) -> str:
    seconds = jobs.interval_seconds(schedule)
    if seconds is not None:
        return describe_interval(seconds)
    if isinstance(schedule, crontab):
        return describe_crontab(schedule)
    return str(schedule)


def next_run(schedule, last_at: datetime | None, *, now: datetime) -> datetime | None:
    """When beat should send the job next, judged from its last recorded start. None when the
    job has no run yet and runs on an interval (beat sends it on its first tick)."""
    seconds = jobs.interval_seconds(schedule)
    if seconds is not None:
        return last_at + timedelta(seconds=seconds) if last_at else None
    remaining = jobs.as_schedule(schedule).remaining_estimate(last_at or now)
    return now + remaining


# --- duration sparkline -----------------------------------------------------------------------


def sparkline(values: list[int], *, width: int = 120, height: int = 24) -> dict:
    """SVG polyline points for durations, oldest first; drawn by the template, no JavaScript."""
    if not values:
        return {"points": "", "width": width, "height": height, "max": 0}
    top = max(values) or 1
    if len(values) == 1:
        y = height - 2 - (values[0] / top) * (height - 4)
        return {
            "points": f"0,{y:.1f} {width},{y:.1f}",
            "width": width,
            "height": height,
            "max": top,
        }
    step = width / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values)
    )
    return {"points": points, "width": width, "height": height, "max": top}


# --- the overview -----------------------------------------------------------------------------


@dataclass
class Job:
    name: str
    periodic: bool
    schedule: str = ""
    interval: float | None = None
    last_at: datetime | None = None
    last_outcome: str = ""
    last_duration_ms: int | None = None
    last_worker: str = ""
    next_at: datetime | None = None
    failures_24h: int = 0
    streak: int = 0
    running: list[dict] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    sampled: bool = False

    @property
    def last_duration_label(self) -> str:
        return jobs.format_duration(self.last_duration_ms)

    @property
    def trend(self) -> dict:
        return sparkline(self.durations)

    @property
    def failing(self) -> bool:
        return self.streak > 0 or self.last_outcome == JobRun.Outcome.FAILURE

    @property
    def health(self) -> str:
        if self.streak >= 3:
            return "critical"
        if self.failing or self.failures_24h:
            return "warning"
        return "healthy"

    @property
    def overdue(self) -> bool:
        return bool(
            self.next_at
            and self.interval
            and self.next_at < timezone.now() - timedelta(seconds=max(60, self.interval))
        )


@lru_cache(maxsize=1)
def _load_task_modules() -> None:
    # Every app's tasks.py, once per process: Celery re-runs Django's system checks each time.
    from adminsite.celery import app

    app.loader.import_default_modules()


def registered_task_names() -> list[str]:
    """Our tasks (not Celery's own), periodic or on demand."""
    from adminsite.celery import app

    _load_task_modules()
    return sorted(name for name in app.tasks if not name.startswith("celery."))


def _recent_runs(names: list[str]) -> dict[str, list[tuple]]:
    table = JobRun._meta.db_table
    sql = f"""
        SELECT t.name, r.started_at, r.outcome, r.duration_ms, r.worker
        FROM unnest(%s::text[]) AS t(name)
        CROSS JOIN LATERAL (
            SELECT started_at, outcome, duration_ms, worker FROM {table}
            WHERE task_name = t.name ORDER BY started_at DESC, id DESC LIMIT %s
        ) r
    """  # noqa: S608 - our table name
    runs: dict[str, list[tuple]] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [names, TREND_RUNS])
        for name, started_at, outcome, duration_ms, worker in cursor.fetchall():
            runs.setdefault(name, []).append((started_at, outcome, duration_ms, worker))
    return runs


def _failures_since(since: datetime) -> dict[str, int]:
    from django.db.models import Count

    rows = (
        JobRun.objects.filter(outcome=JobRun.Outcome.FAILURE, started_at__gte=since)
        .values("task_name")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {row["task_name"]: row["n"] for row in rows}


def _running() -> dict[str, list[dict]]:
    rows = JobRun.objects.filter(outcome=JobRun.Outcome.RUNNING).values(
        "task_name", "task_id", "started_at", "worker"
    )
    running: dict[str, list[dict]] = {}
    for row in rows:
        running.setdefault(row["task_name"], []).append(row)
    return running


def _redis_state() -> tuple[dict[str, dict], dict[str, int]]:
    client = jobs.redis_client()
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(jobs.last_run_key())
    pipe.hgetall(jobs.streak_key())
    raw_last, raw_streaks = pipe.execute()
    last = {}
    for key, value in raw_last.items():
        try:
            last[key.decode()] = json.loads(value)
        except ValueError:
            continue
    streaks = {key.decode(): int(value) for key, value in raw_streaks.items()}
    return last, streaks


def _still_running(task_name: str, started_at: datetime, *, now: datetime) -> bool:
    """A row left ``running`` by a worker killed hard is not running past the task's lock."""
    from adminsite.celery import app

    task = app.tasks.get(task_name)
    limit = jobs.lock_ttl(task) if task is not None else 3600
    return started_at > now - timedelta(seconds=limit)


def job_overview(*, now: datetime | None = None) -> list[Job]:
    """Every periodic job of the beat schedule, in schedule order, then the on-demand tasks."""
    now = now or timezone.now()
    schedule = jobs.beat_schedule()
    frequent = jobs.frequent_task_names()
    periodic_names = list(dict.fromkeys(entry["task"] for entry in schedule.values()))
    others = [name for name in registered_task_names() if name not in set(periodic_names)]
    names = periodic_names + others
    recent = _recent_runs(names)
    failures = _failures_since(now - FAILURE_WINDOW)
    running = _running()
    try:
        last_runs, streaks = _redis_state()
    except Exception:  # Redis down: the database's record still answers
        last_runs, streaks = {}, {}
    entries = {entry["task"]: entry for entry in schedule.values()}
    result = []
    for name in names:
        runs = recent.get(name, [])
        job = Job(name=name, periodic=name in entries, sampled=name in frequent)
        if job.periodic:
            job.schedule = describe_schedule(entries[name]["schedule"])
            job.interval = jobs.interval_seconds(entries[name]["schedule"])
        if runs:
            job.last_at, job.last_outcome, job.last_duration_ms, job.last_worker = runs[0]
        hot = last_runs.get(name)
        if hot and (job.last_at is None or hot.get("at", 0) > job.last_at.timestamp()):
            job.last_at = datetime.fromtimestamp(hot["at"], tz=UTC)
            job.last_outcome = hot.get("outcome", "")
            job.last_duration_ms = hot.get("duration_ms")
            job.last_worker = hot.get("worker", "")
        job.durations = [r[2] for r in reversed(runs) if r[2] is not None]
        job.failures_24h = failures.get(name, 0)
        job.streak = streaks.get(name, 0)
        job.running = [
            row for row in running.get(name, []) if _still_running(name, row["started_at"], now=now)
        ]
        if job.periodic:
            job.next_at = next_run(entries[name]["schedule"], job.last_at, now=now)
        result.append(job)
    return result


def workers(*, now: float | None = None) -> list[dict]:
    """Workers by their heartbeat (adminsite.heartbeat, every 30 s), newest first."""
    now = now or time.time()
    beats = health.worker_heartbeats()
    rows = [
        {
            "host": host,
            "beat_at": datetime.fromtimestamp(stamp, tz=UTC),
            "age": max(0, int(now - stamp)),
            "alive": now - stamp <= settings.WORKER_HEARTBEAT_MAX_AGE,
        }
        for host, stamp in beats.items()
    ]
    return sorted(rows, key=lambda row: row["age"])


def queue_depth() -> int | None:
    from monitoring.collectors import queue_depth as llen

    try:
        return llen()
    except Exception:  # Redis down: the page says "unknown" rather than failing
        return None


def job_runs(task_name: str, *, outcome: str = "", before: JobRun | None = None) -> list[JobRun]:
    """A job's runs, newest first, RUNS_PAGE + 1 of them (the extra one says there is more)."""
    queryset = JobRun.objects.filter(task_name=task_name)
    if outcome:
        queryset = queryset.filter(outcome=outcome)
    if before is not None:
        queryset = queryset.filter(
            Q(started_at__lt=before.started_at) | Q(started_at=before.started_at, id__lt=before.id)
        )
    return list(queryset.order_by("-started_at", "-id")[: RUNS_PAGE + 1])


def failing_jobs(overview: list[Job]) -> list[Job]:
    return sorted(
        (job for job in overview if job.failing or job.failures_24h),
        key=lambda job: (-job.streak, -job.failures_24h, job.name),
    )
