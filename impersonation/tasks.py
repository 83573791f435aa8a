"""Celery entry points of impersonation: ids in, look up, call a service."""

from __future__ import annotations

from smtplib import SMTPException

from celery import shared_task

from impersonation import services


@shared_task(
    name="impersonation.notify_customer",
    autoretry_for=(SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=8,
    time_limit=60,
    soft_time_limit=45,
    ignore_result=True,
)
def notify_customer(session_id: int) -> None:
    """Tell the customer support accessed their account (IMPERSONATION_NOTIFY_CUSTOMER).
    Idempotent: the session row records the notice, so a redelivery never mails twice."""
    services.notify_customer(session_id=session_id)


@shared_task(
    name="impersonation.expire_sessions",
    ignore_result=True,
    time_limit=120,
    soft_time_limit=100,
    max_retries=0,
)
def expire_sessions() -> dict[str, int]:
    """End sessions past their time limit or whose staff member lost the right to them."""
    return services.expire_overdue()
