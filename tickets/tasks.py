"""Celery entry points for ticket emails: ids in, look up, call a service.

Each is idempotent (services record a key per email sent), so a retry or a duplicate
delivery never mails twice. SMTP and network errors retry with backoff.
"""

from __future__ import annotations

from datetime import datetime
from smtplib import SMTPException

from celery import shared_task

from tickets import services

_MAIL_RETRY = {
    "autoretry_for": (SMTPException, OSError),
    "retry_backoff": 30,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
    "time_limit": 60,
    "soft_time_limit": 45,
    "ignore_result": True,
}


@shared_task(name="tickets.send_reply_email", **_MAIL_RETRY)
def send_reply_email(comment_id: int) -> None:
    """A staff member replied publicly: mail the reply to the requester."""
    services.send_reply_email(comment_id=comment_id)


@shared_task(name="tickets.send_resolved_email", **_MAIL_RETRY)
def send_resolved_email(ticket_id: int, event_id: int) -> None:
    """A ticket was resolved: tell the requester."""
    services.send_resolved_email(ticket_id=ticket_id, event_id=event_id)


@shared_task(name="tickets.send_assignment_email", **_MAIL_RETRY)
def send_assignment_email(ticket_id: int, assignee_id: int, event_id: int) -> None:
    """A ticket was assigned to someone other than the assigner: tell the assignee."""
    services.send_assignment_email(ticket_id=ticket_id, assignee_id=assignee_id, event_id=event_id)


@shared_task(
    name="tickets.compact_ticket_counts",
    time_limit=120,
    soft_time_limit=100,
    max_retries=0,
    ignore_result=True,
)
def compact_ticket_counts() -> None:
    """Fold the queue counters' delta rows so counting stays a sum over few rows."""
    services.compact_ticket_counts()


@shared_task(
    name="tickets.sla_scan",
    time_limit=55,
    soft_time_limit=50,
    ignore_result=True,
    autoretry_for=(OSError,),
    max_retries=2,
    retry_backoff=5,
)
def sla_scan() -> None:
    """Mark SLA warnings and breaches (every minute, from beat); queues the announcing."""
    services.run_sla_scan()


@shared_task(
    name="tickets.send_sla_alerts",
    time_limit=120,
    soft_time_limit=100,
    ignore_result=True,
    autoretry_for=(OSError,),
    max_retries=3,
    retry_backoff=10,
)
def send_sla_alerts(scanned_at: str) -> None:
    """Announce the SLA alerts that are due: console notifications, audit events, and the
    email tasks. ``scanned_at`` is the scan's time (ISO): alerts due by then go out."""
    services.send_due_sla_alerts(now=datetime.fromisoformat(scanned_at))


@shared_task(name="tickets.send_sla_alert_emails", **_MAIL_RETRY)
def send_sla_alert_emails(pairs: list[list[int]]) -> None:
    """Mail the recipients of SLA alerts: ``pairs`` of [alert id, user id]. Each mail is sent
    once (its key), so a retry after a failure resends only the ones not yet sent."""
    for alert_id, user_id in pairs:
        services.send_sla_alert_email(alert_id=alert_id, user_id=user_id)
