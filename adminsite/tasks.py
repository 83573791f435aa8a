from celery import shared_task

from adminsite import health


@shared_task(name="adminsite.heartbeat", soft_time_limit=5, time_limit=10, ignore_result=True)
def heartbeat() -> None:
    """Stamp the worker heartbeat that /readyz reads."""
    health.record_worker_heartbeat()
