"""Email messages about tickets, rendered from templates/tickets/email/.

Each message carries only what its recipient may read: customer mails contain the one
public reply they are about (never the thread, so never an internal note); staff mails link
to the console. Sending, retries and idempotency live in services/tasks.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string

from adminsite.users import user_label


def _site_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def _thread_headers(ticket) -> dict[str, str]:
    # One thread per ticket in the customer's mail client.
    host = settings.SITE_URL.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "adminsite"
    thread_id = f"<ticket-{ticket.pk}@{host}>"
    return {"References": thread_id, "In-Reply-To": thread_id}


def _message(template: str, context: dict, *, recipient, headers=None) -> EmailMessage:
    subject = " ".join(render_to_string(f"tickets/email/{template}_subject.txt", context).split())
    body = render_to_string(f"tickets/email/{template}_body.txt", context)
    return EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[recipient.email],
        headers=headers or {},
    )


def reply_email(*, comment, ticket, recipient) -> EmailMessage:
    context = {
        "ticket": ticket,
        "comment": comment,
        "recipient": recipient,
        "author_name": user_label(comment.author),
        "ticket_url": _site_url(f"/help/tickets/{ticket.pk}/"),
    }
    return _message("reply", context, recipient=recipient, headers=_thread_headers(ticket))


def resolved_email(*, ticket, recipient) -> EmailMessage:
    context = {
        "ticket": ticket,
        "recipient": recipient,
        "ticket_url": _site_url(f"/help/tickets/{ticket.pk}/"),
    }
    return _message("resolved", context, recipient=recipient, headers=_thread_headers(ticket))


def assignment_email(*, ticket, recipient) -> EmailMessage:
    context = {
        "ticket": ticket,
        "recipient": recipient,
        "ticket_url": _site_url(f"/admin/support/{ticket.pk}/"),
    }
    return _message("assigned", context, recipient=recipient)


def sla_alert_email(*, alert, ticket, target, recipient) -> EmailMessage:
    context = {
        "alert": alert,
        "ticket": ticket,
        "target": target,
        "recipient": recipient,
        "is_breach": alert.kind == "breach",
        "ticket_url": _site_url(f"/admin/support/{ticket.pk}/"),
    }
    return _message("sla_alert", context, recipient=recipient)
