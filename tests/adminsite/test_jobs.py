"""Background job run records, the overlap lock, the failure streak and its alert, retention, and
the rules every task follows. Runs go through Celery's own tracer (``task.apply()``) so the
signals that record them fire exactly as in a worker; tests/adminsite/test_jobs_worker.py does
the same against a real worker process."""

from __future__ import annotations

import threading
from datetime import timedelta
from importlib import import_module

import pytest
import time_machine
from celery.schedules import crontab
from celery.utils.imports import gen_task_name
from django.apps import apps as django_apps
from django.utils import timezone

from adminsite import jobs, jobs_queries, jobs_services
from adminsite.celery import app
from adminsite.models import JobRun
from tests.adminsite.jobs_tasks import (
    JobBoomError,  # noqa: F401 - named in tracebacks
    blocking_job,
    failing_job,
    forget,
    ok_job,
    release,
    started,
)
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def periodic(settings):
    """The test tasks in the beat schedule, as if adminsite/schedules.py listed them."""
    saved = dict(app.conf.beat_schedule)
    app.conf.beat_schedule = {
        **saved,
        "tests.jobs.fail": {"task": "tests.jobs.fail", "schedule": timedelta(minutes=5)},
        "tests.jobs.block": {"task": "tests.jobs.block", "schedule": timedelta(minutes=5)},
        "tests.jobs.ok": {"task": "tests.jobs.ok", "schedule": timedelta(seconds=2)},
    }
    forget()
    yield
    app.conf.beat_schedule = saved
    forget()


def runs(name: str) -> list[JobRun]:
    return list(JobRun.objects.filter(task_name=name).order_by("started_at", "id"))


# --- every task follows the rules (STYLE.md) --------------------------------------------------


def test_every_task_has_an_explicit_name_time_limits_and_a_retry_policy():
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}
    assert "adminsite.purge_job_runs" in ours and "monitoring.flush_metrics" in ours
    problems = []
    for name, task in sorted(ours.items()):
        if name == gen_task_name(app, task.__name__, task.__module__):
            problems.append(f"{name}: no explicit name= (the generated one is used)")
        stated = getattr(task, "declared_options", frozenset())
        if not {"time_limit", "soft_time_limit"} <= stated:
            problems.append(f"{name}: time_limit and soft_time_limit must both be set")
        elif task.soft_time_limit >= task.time_limit:
            problems.append(f"{name}: soft_time_limit must be below time_limit")
        if not stated & {"autoretry_for", "max_retries"}:
            problems.append(f"{name}: no stated retry policy (autoretry_for or max_retries)")
        if not isinstance(task, jobs.JobTask):
            problems.append(f"{name}: does not use the project's task base class")
    assert not problems, "\n".join(problems)


def test_late_ack_is_on_so_a_lost_worker_task_runs_again():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] >= 1


# --- schedules in words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (2, "every 2 seconds"),
        (10, "every 10 seconds"),
        (1.5, "every 1.5 seconds"),
        (60, "every minute"),
        (900, "every 15 minutes"),
        (3600, "hourly"),
        (7200, "every 2 hours"),
        (86400, "daily"),
        (3 * 86400, "every 3 days"),
        (7 * 86400, "weekly"),
        (90, "every 90 seconds"),
    ],
)
def test_intervals_in_words(seconds, words):
    assert jobs_queries.describe_schedule(timedelta(seconds=seconds)) == words


def test_crontabs_in_words():
    assert jobs_queries.describe_schedule(crontab(minute=0, hour=3)) == "daily at 03:00 UTC"
    assert jobs_queries.describe_schedule(crontab(minute=15)) == "hourly at minute 15"
    assert (
        jobs_queries.describe_schedule(crontab(minute=30, hour=6, day_of_week="mon-fri"))
        == "at 06:30 UTC on days mon-fri of the week"
    )
    assert jobs_queries.describe_schedule(crontab(minute="*/5")) == "cron */5 * * * *"


def test_every_scheduled_job_is_listed_and_a_new_one_appears_by_itself(periodic):
    overview = jobs_queries.job_overview()
    listed = [job.name for job in overview if job.periodic]
    assert listed[: len(app.conf.beat_schedule)] == list(
        dict.fromkeys(entry["task"] for entry in app.conf.beat_schedule.values())
    )
    assert "tests.jobs.ok" in listed
    job = next(job for job in overview if job.name == "adminsite.purge_job_runs")
    assert job.schedule == "daily"
    flush = next(job for job in overview if job.name == "monitoring.flush_metrics")
    assert (flush.schedule, flush.sampled) == ("every 2 seconds", True)
    emails = next(job for job in overview if job.name == "tickets.send_reply_email")
    assert not emails.periodic


# --- recording runs ---------------------------------------------------------------------------


def test_a_run_is_recorded_with_its_outcome_duration_and_masked_arguments(periodic):
    app.conf.beat_schedule.pop("tests.jobs.ok")  # not sampled: every run recorded
    result = ok_job.apply(kwargs={"secret_token": "hunter2", "n": 7})
    assert result.get() == 7
    [run] = runs("tests.jobs.ok")
    assert run.outcome == JobRun.Outcome.SUCCESS
    assert run.task_id == result.id
    assert run.args_summary == "secret_token='***', n=7"
    assert run.finished_at >= run.started_at
    assert run.duration_ms is not None and run.duration_ms < 5000
    assert (run.error, run.traceback) == ("", "")


def test_a_failure_is_recorded_with_its_traceback(periodic):
    failing_job.apply(args=["disk full"])
    [run] = runs("tests.jobs.fail")
    assert run.outcome == JobRun.Outcome.FAILURE
    assert run.error == "JobBoomError: disk full"
    assert "Traceback" in run.traceback and "raise JobBoomError(reason)" in run.traceback
    assert run.duration_ms is not None


def test_frequent_jobs_keep_every_failure_and_one_success_a_minute(periodic):
    assert "tests.jobs.ok" in jobs.frequent_task_names()
    for n in range(5):
        ok_job.apply(kwargs={"n": n})
    recorded = runs("tests.jobs.ok")
    assert [run.args_summary for run in recorded] == ["n=0"]
    # The jobs page still knows the true last run (kept in Redis on every run).
    job = next(j for j in jobs_queries.job_overview() if j.name == "tests.jobs.ok")
    assert job.last_outcome == "success"
    assert job.last_at > recorded[0].started_at


def test_three_failures_in_a_row_report_a_streak_of_three_and_open_an_alert(periodic):
    from monitoring import alerts, queries, storage
    from monitoring.metrics import flush_buffer, stream_key
    from monitoring.models import Alert, AlertRule

    for _ in range(3):
        failing_job.apply()
    flush_buffer()
    storage.flush_stream(jobs.redis_client(), stream_key())
    latest = {
        (name, tags): value
        for name, tags, value in queries.latest_values()
        if name == jobs.FAILURE_METRIC
    }
    assert latest[(jobs.FAILURE_METRIC, '{"job":"tests.jobs.fail"}')] == 3

    # The rule as the alerting migration installs it (transactional tests empty every table).
    migration = import_module("monitoring.migrations.0005_background_job_rule")
    migration.create_rule(django_apps, None)
    alerts.evaluate()
    rule = AlertRule.objects.get(name="Background job failing")
    firing = Alert.objects.filter(rule=rule, tags__job="tests.jobs.fail").exclude(status="resolved")
    assert [(a.status, a.severity) for a in firing] == [("firing", "critical")]

    overview = {job.name: job for job in jobs_queries.job_overview()}
    assert overview["tests.jobs.fail"].streak == 3
    assert overview["tests.jobs.fail"].failures_24h == 3
    assert overview["tests.jobs.fail"].health == "critical"


def test_a_success_ends_the_streak_even_when_sampled(periodic):
    from monitoring import queries, storage
    from monitoring.metrics import flush_buffer, stream_key

    app.conf.beat_schedule["tests.jobs.fail"]["schedule"] = timedelta(seconds=2)
    app.conf.beat_schedule["tests.jobs.ok"]["schedule"] = timedelta(seconds=2)
    jobs.redis_client().hset(jobs.streak_key(), "tests.jobs.ok", 2)
    jobs.redis_client().set(jobs._key("sample:tests.jobs.ok"), 1, ex=60)  # sampled already
    ok_job.apply()
    assert [run.outcome for run in runs("tests.jobs.ok")] == ["success"]
    flush_buffer()
    storage.flush_stream(jobs.redis_client(), stream_key())
    latest = {
        tags: value for name, tags, value in queries.latest_values() if name == jobs.FAILURE_METRIC
    }
    assert latest['{"job":"tests.jobs.ok"}'] == 0


# --- the overlap lock -------------------------------------------------------------------------


def test_a_second_run_while_one_is_running_is_skipped_and_recorded(periodic):
    release.clear()
    started.clear()
    first = threading.Thread(target=blocking_job.apply, daemon=True)
    first.start()
    try:
        assert started.wait(10), "the first run did not start"
        wait_until(
            lambda: JobRun.objects.filter(task_name="tests.jobs.block", outcome="running").exists(),
            what="the first run recorded as running",
        )
        second = blocking_job.apply()
        assert second.get() is None
        assert [r.outcome for r in runs("tests.jobs.block")] == ["running", "skipped"]
    finally:
        release.set()
        first.join(10)
    assert [r.outcome for r in runs("tests.jobs.block")] == ["success", "skipped"]
    # Once the first run ended, the lock is free again.
    assert blocking_job.apply().get() == "done"
    assert jobs.redis_client().exists(jobs.lock_key("tests.jobs.block")) == 0


def test_the_lock_expires_after_the_time_limit_so_a_dead_holder_blocks_for_a_bounded_time(periodic):
    assert jobs.lock_ttl(blocking_job) == 30 + jobs.LOCK_MARGIN_SECONDS
    release.set()
    client = jobs.redis_client()
    client.set(jobs.lock_key("tests.jobs.block"), "dead-worker", ex=60)
    assert blocking_job.apply().get() is None
    client.delete(jobs.lock_key("tests.jobs.block"))
    assert blocking_job.apply().get() == "done"
    assert [r.outcome for r in runs("tests.jobs.block")] == ["skipped", "success"]


def test_on_demand_tasks_take_no_lock(periodic):
    app.conf.beat_schedule.pop("tests.jobs.ok")
    jobs.redis_client().set(jobs.lock_key("tests.jobs.ok"), "someone", ex=60)
    assert ok_job.apply(kwargs={"n": 3}).get() == 3
    jobs.redis_client().delete(jobs.lock_key("tests.jobs.ok"))


# --- retention --------------------------------------------------------------------------------


def test_runs_older_than_the_retention_are_purged_daily(periodic, settings):
    settings.JOB_RUN_RETENTION_DAYS = 30
    app.conf.beat_schedule.pop("tests.jobs.ok")
    now = timezone.now()
    with time_machine.travel(now - timedelta(days=31), tick=False):
        ok_job.apply(kwargs={"n": 1})
    with time_machine.travel(now - timedelta(days=29), tick=False):
        ok_job.apply(kwargs={"n": 2})
    assert len(runs("tests.jobs.ok")) == 2
    assert jobs_services.purge_job_runs(now=now) == 1
    assert [r.args_summary for r in runs("tests.jobs.ok")] == ["n=2"]
    # The daily task does the same, and is itself recorded.
    assert app.tasks["adminsite.purge_job_runs"].apply().get() == 0
    assert runs("adminsite.purge_job_runs")[-1].outcome == "success"
    from adminsite.schedules import BEAT_SCHEDULE

    assert BEAT_SCHEDULE["adminsite.purge_job_runs"]["schedule"] == timedelta(days=1)


def test_purge_works_in_batches(periodic, settings, monkeypatch):
    app.conf.beat_schedule.pop("tests.jobs.ok")
    now = timezone.now()
    with time_machine.travel(now - timedelta(days=40), tick=False):
        for n in range(5):
            ok_job.apply(kwargs={"n": n})
    monkeypatch.setattr(jobs_services, "PURGE_BATCH", 2)
    assert jobs_services.purge_job_runs(now=now) == 5
    assert runs("tests.jobs.ok") == []
