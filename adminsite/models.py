from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.postgres.indexes import BrinIndex
from django.db import models

TOKEN_PREFIX = "ast_"  # noqa: S105 - a public prefix, not a secret


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A Bearer token for the JSON API. Only its SHA-256 is stored; the raw token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to recognise a token.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("view_jobs", "Can view background jobs"),
            ("run_jobs", "Can run background jobs now"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> str:
        return TOKEN_PREFIX + secrets.token_urlsafe(32)


class JobRun(models.Model):
    """One execution of a Celery task, recorded by the signal receivers of adminsite/jobs.py.

    Written with one INSERT when the task starts and one UPDATE when it ends. Tasks scheduled
    more often than once a minute are sampled instead (see ``jobs.FREQUENT_SECONDS``): each of
    their failures, retries and skips is kept, successes at most once a minute per task.
    Rows older than JOB_RUN_RETENTION_DAYS are deleted daily (``adminsite.purge_job_runs``).
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCESS = "success", "Success"
        FAILURE = "failure", "Failure"
        RETRY = "retry", "Retry"
        SKIPPED = "skipped", "Skipped"
        # The worker died while running it (the broker delivered the task again).
        LOST = "lost", "Lost"

    task_id = models.CharField(max_length=64)
    task_name = models.CharField(max_length=200)
    args_summary = models.CharField(max_length=300, blank=True)
    queue = models.CharField(max_length=100, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    requested_by = models.CharField(
        max_length=150, blank=True, help_text="Who asked for this run from /admin/jobs/."
    )
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    retries = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            # A job's recent runs, newest first (job page, last run and trend per job).
            models.Index(
                fields=["task_name", "-started_at", "-id"], name="jobrun_task_started_idx"
            ),
            # Retention deletes by age. BRIN: rows arrive in time order, so block ranges are
            # tiny to index and exact enough; and it cannot serve ORDER BY started_at, so the
            # planner never walks it backwards looking for one job's newest runs.
            BrinIndex(fields=["started_at"], name="jobrun_started_brin"),
            # Redelivery marks the earlier attempt of the same task id as lost.
            models.Index(fields=["task_id"], name="jobrun_task_id_idx"),
            # Failures in the last 24 h and running jobs: small partial indexes.
            models.Index(
                fields=["started_at", "task_name"],
                name="jobrun_failures_idx",
                condition=models.Q(outcome="failure"),
            ),
            models.Index(
                fields=["task_name"],
                name="jobrun_running_idx",
                condition=models.Q(outcome="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"

    @property
    def duration_label(self) -> str:
        from adminsite.jobs import format_duration

        return format_duration(self.duration_ms)
