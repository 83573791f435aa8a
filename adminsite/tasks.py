from celery import shared_task

from adminsite import health, jobs_services

# Periodic tasks do not retry (max_retries=0): the next beat is their retry, and the overlap
# lock keeps a late one from running beside it.


@shared_task(
    name="adminsite.heartbeat", soft_time_limit=5, time_limit=10, max_retries=0, ignore_result=True
)
def heartbeat() -> None:
    """Stamp the worker heartbeat that /readyz reads."""
    health.record_worker_heartbeat()


@shared_task(
    name="adminsite.purge_job_runs",
    soft_time_limit=600,
    time_limit=660,
    max_retries=0,
    ignore_result=True,
)
def purge_job_runs() -> int:
    """Delete run records older than JOB_RUN_RETENTION_DAYS."""
    return jobs_services.purge_job_runs()
