"""Ops commands: every management command of the project answers --help, the README lists each
one, and the ``jobs`` command's views, check (with an exit code scripts can trust), run and purge."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.core.management import ManagementUtility, call_command, get_commands
from django.core.management.base import CommandError
from django.utils import timezone

from adminsite.models import JobRun
from audit.models import AuditEntry
from tests.adminsite.jobs_tasks import failing_job, forget
from tests.processes import worker_database_url

BASE_DIR = Path(__file__).resolve().parents[2]
PROJECT_APPS = {"adminsite", "audit", "impersonation", "tickets", "monitoring", "shop"}


def project_commands() -> list[str]:
    return sorted(name for name, app in get_commands().items() if app in PROJECT_APPS)


def test_the_project_commands_are_found():
    names = project_commands()
    assert {"jobs", "create_api_token", "audit_verify", "ticket_counts"} <= set(names)
    on_disk = {
        path.stem
        for path in BASE_DIR.glob("*/management/commands/*.py")
        if not path.stem.startswith("_")
    }
    assert set(names) == on_disk


@pytest.mark.parametrize("name", project_commands())
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exited:
        ManagementUtility(["manage.py", name, "--help"]).execute()
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: manage.py {name}")
    description = out.split("\n\n")[1].strip()
    assert len(description) > 20, f"{name} --help has no description of what it does"


def test_the_readme_lists_every_command_with_one_line():
    readme = (BASE_DIR / "README.md").read_text()
    listed = set(re.findall(r"^\| `(?:python manage\.py )?([a-z_]+)[^`]*` \|", readme, re.M))
    missing = set(project_commands()) - listed
    assert not missing, f"README.md's command table lacks: {', '.join(sorted(missing))}"


# --- the jobs command -------------------------------------------------------------------------


@pytest.mark.django_db
def test_jobs_lists_every_periodic_job(capsys):
    from adminsite.tasks import purge_job_runs

    purge_job_runs.apply()
    call_command("jobs")
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "JOB",
        "SCHEDULE",
        "LAST",
        "RUN",
        "(UTC)",
        "OUTCOME",
        "FAILED",
        "24",
        "H",
    ]
    purge = next(line for line in out if line.startswith("adminsite.purge_job_runs "))
    assert "daily" in purge and "success" in purge
    assert any(
        line.startswith("monitoring.flush_metrics ") and "every 2 seconds" in line for line in out
    )


@pytest.mark.django_db
def test_jobs_run_queues_an_audited_run_and_names_a_bad_job(
    capsys, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        call_command("jobs", "--run", "adminsite.purge_job_runs")
    assert len(callbacks) == 1
    assert capsys.readouterr().out.startswith("Queued adminsite.purge_job_runs (task ")
    assert AuditEntry.objects.filter(event="job.run_requested").count() == 1
    with pytest.raises(CommandError, match="'nope' is not a periodic job"):
        call_command("jobs", "--run", "nope")


@pytest.mark.django_db
def test_jobs_purge_deletes_old_runs(capsys):
    from adminsite.tasks import purge_job_runs

    with time_machine.travel(timezone.now() - timedelta(days=45), tick=False):
        purge_job_runs.apply()  # itself recorded, 45 days ago
    failing_job.apply()  # a recent run, which stays
    call_command("jobs", "--purge", "--no-progress")
    assert capsys.readouterr().out.startswith("Deleted 1 run records started before ")
    assert not JobRun.objects.filter(task_name="adminsite.purge_job_runs").exists()
    assert JobRun.objects.filter(task_name="tests.jobs.fail").count() == 1


@pytest.mark.django_db(transaction=True)
def test_jobs_check_exits_1_naming_the_failing_job():
    from adminsite.celery import app

    forget()
    saved = dict(app.conf.beat_schedule)
    app.conf.beat_schedule = {
        **saved,
        "tests.jobs.fail": {"task": "tests.jobs.fail", "schedule": timedelta(minutes=5)},
    }
    try:
        failing_job.apply()
        failing_job.apply()
        with pytest.raises(CommandError, match=r"^failing: .*tests.jobs.fail \(2 in a row\)"):
            call_command("jobs", "--check")
    finally:
        app.conf.beat_schedule = saved
        forget()

    # The same from a shell, as a script runs it: the exit status says it. Redis keys of its own,
    # so what other tests left in Redis about real jobs (a failed verification) stays out.
    from adminsite.tasks import purge_job_runs

    purge_job_runs.apply()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "REDIS_KEY_PREFIX": f"{settings.REDIS_KEY_PREFIX}cli{os.getpid()}:",
        "ADMINSITE_TESTING": "1",
    }
    ok = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "jobs", "--check"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "adminsite.purge_job_runs" in ok.stdout
    bad = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "jobs", "--run", "no.such.job"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "CommandError: 'no.such.job' is not a periodic job" in bad.stderr
