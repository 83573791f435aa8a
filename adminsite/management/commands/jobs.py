"""Background jobs from the command line: the state of every periodic job, a health check for
scripts, "run now", and the retention purge.

    python manage.py jobs                   # every periodic job: schedule, last run, failures
    python manage.py jobs --check           # exit 1 when a job failed its last run
    python manage.py jobs --run NAME        # queue one run of a periodic job now (audited)
    python manage.py jobs --purge           # delete run records past JOB_RUN_RETENTION_DAYS now

Exit status: 0 when all is well, 1 on a failing job (--check) or any error.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from tqdm import tqdm

from adminsite import jobs_queries, jobs_services
from adminsite.models import JobRun


class Command(BaseCommand):
    help = "Show the background jobs; --check for scripts, --run NAME to run one now, --purge."

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--check",
            action="store_true",
            help="Exit 1 (naming them) when a periodic job failed its last run.",
        )
        action.add_argument(
            "--run", metavar="NAME", help="Queue one run of the periodic job NAME now."
        )
        action.add_argument(
            "--purge",
            action="store_true",
            help="Delete run records older than JOB_RUN_RETENTION_DAYS now (beat does it daily).",
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="Do not draw a progress bar."
        )

    def handle(self, *args, **options):
        try:
            if options["run"]:
                return self._run(options["run"])
            if options["purge"]:
                return self._purge(show=not options["no_progress"] and sys.stderr.isatty())
            return self._show(check=options["check"])
        except DatabaseError as error:
            raise CommandError(f"the database could not be read: {error}") from error

    def _run(self, name: str) -> None:
        try:
            task_id = jobs_services.request_run(actor=None, task_name=name)
        except jobs_services.UnknownJobError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(self.style.SUCCESS(f"Queued {name} (task {task_id})."))

    def _purge(self, *, show: bool) -> None:
        cutoff = jobs_services.retention_cutoff()
        due = JobRun.objects.filter(started_at__lt=cutoff).count()
        with tqdm(total=due, desc="Purging job runs", unit=" runs", disable=not show,
                  file=sys.stderr) as bar:  # fmt: skip
            purged = jobs_services.purge_job_runs(progress=bar.update)
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {purged:,} run records started before {cutoff:%Y-%m-%d %H:%M} UTC."
            )
        )

    def _show(self, *, check: bool) -> None:
        overview = [job for job in jobs_queries.job_overview() if job.periodic]
        width = max(len(job.name) for job in overview) if overview else 10
        self.stdout.write(
            f"{'JOB':<{width}}  {'SCHEDULE':<18}  {'LAST RUN (UTC)':<19}  {'OUTCOME':<8}  FAILED 24 H"
        )
        for job in overview:
            last = f"{job.last_at:%Y-%m-%d %H:%M:%S}" if job.last_at else "never"
            self.stdout.write(
                f"{job.name:<{width}}  {job.schedule:<18}  {last:<19}  "
                f"{job.last_outcome or '-':<8}  {job.failures_24h}"
            )
        failing = [job for job in overview if job.failing]
        if check and failing:
            raise CommandError(
                "failing: " + ", ".join(f"{job.name} ({job.streak} in a row)" for job in failing)
            )
