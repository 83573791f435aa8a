"""Sending one alert notification: email (Django mail), a Slack incoming webhook, or a generic
webhook signed with HMAC-SHA256.

The webhook body is JSON; its headers carry ``X-Adminsite-Timestamp`` (Unix seconds) and
``X-Adminsite-Signature: sha256=<hex>``, the HMAC-SHA256 with ``ALERT_WEBHOOK_SECRET`` of
``"<timestamp>.<body>"``. A receiver recomputes it and refuses old timestamps (replays).

Failures raise :class:`DeliveryError`; ``retryable`` says whether trying again may help (5xx,
timeouts, refused connections, SMTP 4xx) or not (4xx, a refused recipient).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import EmailMessage

if TYPE_CHECKING:
    from monitoring.models import Alert, Notification

SIGNATURE_HEADER = "X-Adminsite-Signature"
TIMESTAMP_HEADER = "X-Adminsite-Timestamp"
USER_AGENT = "Adminsite-Alerting/1.0"


class DeliveryError(Exception):
    def __init__(self, message: str, *, retryable: bool, status_code: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status_code = status_code


# --- the message -----------------------------------------------------------------------------

HEADLINES = {
    "firing": "FIRING",
    "escalated": "ESCALATED to critical",
    "renotify": "STILL FIRING",
    "resolved": "RESOLVED",
}


def alert_url(alert: Alert) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/admin/monitoring/alerts/{alert.pk}/"


def _value(value) -> str:
    return "no data" if value is None else f"{value:g}"


def payload(alert: Alert, event: str) -> dict:
    """The JSON a webhook receives."""
    return {
        "event": event,
        "alert": {
            "id": alert.pk,
            "status": alert.status,
            "severity": alert.severity,
            "rule": alert.rule_name,
            "ruleId": alert.rule_id,
            "metric": alert.metric,
            "tags": json.loads(alert.tags_key) if alert.tags_key else {},
            "condition": alert.condition,
            "value": alert.value,
            "threshold": alert.threshold,
            "startedAt": alert.started_at.isoformat(),
            "firedAt": alert.fired_at.isoformat() if alert.fired_at else None,
            "resolvedAt": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "url": alert_url(alert),
        },
    }


def summary(alert: Alert, event: str) -> tuple[str, str]:
    """Subject line and plain-text body."""
    tags = (
        f" [{', '.join(f'{k}={v}' for k, v in json.loads(alert.tags_key).items())}]"
        if alert.tags_key
        else ""
    )
    subject = f"[{alert.severity.upper()}] {HEADLINES.get(event, event)}: {alert.rule_name}{tags}"
    lines = [
        f"{alert.rule_name}{tags} is {HEADLINES.get(event, event).lower()}.",
        "",
        f"Condition: {alert.condition}",
        f"Value: {_value(alert.value)} (threshold {alert.threshold:g})",
        f"Severity: {alert.severity}",
        f"Since: {alert.started_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if alert.resolved_at:
        lines.append(f"Resolved: {alert.resolved_at:%Y-%m-%d %H:%M:%S} UTC")
    if alert.resolution_note:
        lines.append(f"Note: {alert.resolution_note}")
    lines += ["", alert_url(alert)]
    return subject, "\n".join(lines)


def slack_message(alert: Alert, event: str) -> dict:
    subject, _body = summary(alert, event)
    emoji = {"critical": ":rotating_light:", "warning": ":warning:"}.get(
        alert.severity, ":information_source:"
    )
    if event == "resolved":
        emoji = ":white_check_mark:"
    fields = [
        {"type": "mrkdwn", "text": f"*Condition*\n`{alert.condition}`"},
        {
            "type": "mrkdwn",
            "text": f"*Value*\n{_value(alert.value)} (threshold {alert.threshold:g})",
        },
        {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
        {"type": "mrkdwn", "text": f"*Since*\n{alert.started_at:%Y-%m-%d %H:%M:%S} UTC"},
    ]
    return {
        "text": f"{emoji} {subject}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} *{subject}*"}},
            {"type": "section", "fields": fields},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"<{alert_url(alert)}|Open the alert>"},
            },
        ],
    }


def sign(body: bytes, timestamp: int, secret: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


# --- sending -------------------------------------------------------------------------------


def send(notification: Notification) -> int | None:
    """Deliver ``notification``; the HTTP status for webhooks, None for email."""
    alert, event = notification.alert, notification.event
    if notification.channel == "email":
        send_email(notification.target, *summary(alert, event))
        return None
    if notification.channel == "slack":
        return post_json(notification.target, slack_message(alert, event))
    if notification.channel == "webhook":
        return post_json(notification.target, payload(alert, event), signed=True)
    raise DeliveryError(f"Unknown channel {notification.channel!r}.", retryable=False)


def send_email(to: str, subject: str, body: str) -> None:
    try:
        EmailMessage(subject=subject, body=body, to=[to]).send()
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _msg in exc.recipients.values()]
        temporary = all(400 <= code < 500 for code in codes)
        raise DeliveryError(
            f"SMTP refused the recipient: {exc.recipients}", retryable=temporary,
            status_code=codes[0] if codes else None,
        ) from None  # fmt: skip
    except smtplib.SMTPResponseException as exc:
        message = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        raise DeliveryError(
            f"SMTP {exc.smtp_code}: {message}", retryable=400 <= exc.smtp_code < 500,
            status_code=exc.smtp_code,
        ) from None  # fmt: skip
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP server unreachable: {exc}", retryable=True) from None
    return None


def post_json(url: str, data: dict, *, signed: bool = False) -> int:
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if signed:
        timestamp = int(time.time())
        headers[TIMESTAMP_HEADER] = str(timestamp)
        headers[SIGNATURE_HEADER] = sign(body, timestamp, settings.ALERT_WEBHOOK_SECRET)
    if not url.lower().startswith(("http://", "https://")):
        raise DeliveryError(f"{url[:100]!r} is not an http(s) URL.", retryable=False)
    # http(s) only (checked above and by the rule's validation): never file: or others.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    timeout = settings.ALERT_NOTIFICATION_TIMEOUT
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        text = exc.read(300).decode(errors="replace").strip()
        detail = f"HTTP {exc.code}" + (f": {text}" if text else "")
        # 408 and 429 say "later", like a 5xx; every other 4xx will fail the same way again.
        retryable = exc.code >= 500 or exc.code in (408, 429)
        raise DeliveryError(detail, retryable=retryable, status_code=exc.code) from None
    except TimeoutError as exc:
        raise DeliveryError(f"Timed out: {exc}", retryable=True) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise DeliveryError(f"Timed out: {reason}", retryable=True) from None
        raise DeliveryError(f"Connection failed: {reason}", retryable=True) from None
    except OSError as exc:
        raise DeliveryError(f"Connection failed: {exc}", retryable=True) from None
