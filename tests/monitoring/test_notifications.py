"""Notification delivery against local servers speaking the protocols: SMTP (aiosmtpd), a
Slack incoming webhook and a signed generic webhook (http.server in a thread). Servers that
fail first and succeed later show the retries; 4xx is not retried; every attempt is stored and
audited; a silence keeps everything quiet while the alert still changes state."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from adminsite import roles
from audit.models import AuditEntry
from monitoring import alerts, services, storage, tasks
from monitoring.models import Alert, AlertEvent, DeliveryAttempt, Notification
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db


class ScriptedHTTP:
    """An HTTP server answering POSTs with the given statuses in turn (the last one repeats);
    a status of ``"slow"`` answers 200 after ``slow_seconds``, past the client's timeout."""

    def __init__(self, statuses, *, slow_seconds=2.0):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append({"headers": dict(self.headers), "body": body})
                status = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                if status == "slow":
                    time.sleep(slow_seconds)  # the server being slow, not the test waiting
                    status = 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"upstream trouble")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class SMTPHandler:
    """Accepts mail, after refusing the first ``busy`` messages with a temporary 451."""

    def __init__(self, busy=0):
        self.busy = busy
        self.messages: list[tuple[list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        if self.busy:
            self.busy -= 1
            return "451 Try again later"
        self.messages.append((envelope.rcpt_tos, envelope.content.decode()))
        return "250 Message accepted"


@pytest.fixture
def smtp(settings):
    handler = SMTPHandler()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield handler
    controller.stop()


@pytest.fixture
def ops():
    return StaffFactory(role=roles.OPS)


@pytest.fixture(autouse=True)
def fast_settings(settings):
    settings.ALERT_NOTIFICATION_TIMEOUT = 1
    settings.ALERT_NOTIFICATION_RETRIES = 3
    settings.ALERT_WEBHOOK_SECRET = "test-signing-secret"  # noqa: S105
    settings.SITE_URL = "https://console.example"


def breach(ops, channels, *, value=750.0, **fields):
    rule = services.create_rule(
        actor=ops,
        data={
            "name": "High API Latency",
            "metric": "api_latency_ms",
            "operator": "gt",
            "threshold": 500,
            "severity": "warning",
            "notification_channels": channels,
            **fields,
        },
    )
    now = datetime.now(UTC)
    storage.write_points([("api_latency_ms", value, int(now.timestamp() * 1e6) - 1000, "")])
    alerts.evaluate(now=now)
    return rule, Alert.objects.get(rule=rule)


def deliver(notification):
    tasks.deliver_notification.apply(args=[notification.pk])
    notification.refresh_from_db()
    return notification


def test_email_through_a_real_smtp_server(ops, smtp):
    _rule, alert = breach(ops, {"email": ["oncall@example.com"]})
    notification = deliver(Notification.objects.get(alert=alert))
    assert notification.status == "sent"
    ((recipients, content),) = smtp.messages
    assert recipients == ["oncall@example.com"]
    assert "Subject: [WARNING] FIRING: High API Latency" in content
    assert "Value: 750 (threshold 500)" in content
    assert f"https://console.example/admin/monitoring/alerts/{alert.pk}/" in content


def test_email_retried_after_a_temporary_smtp_refusal(ops, smtp):
    smtp.busy = 2
    _rule, alert = breach(ops, {"email": ["oncall@example.com"]})
    notification = deliver(Notification.objects.get(alert=alert))
    assert (notification.status, notification.attempts) == ("sent", 3)
    outcomes = list(notification.attempt_log.values_list("outcome", "status_code"))
    assert outcomes == [("retry", 451), ("retry", 451), ("sent", None)]
    assert len(smtp.messages) == 1


def test_slack_message_and_retry_on_5xx(ops):
    with ScriptedHTTP([503, 502, 200]) as slack:
        _rule, alert = breach(ops, {"slack": [slack.url]})
        notification = deliver(Notification.objects.get(alert=alert))
    assert (notification.status, notification.attempts) == ("sent", 3)
    assert [a.status_code for a in notification.attempt_log.all()] == [503, 502, 200]
    assert notification.attempt_log.first().detail == "HTTP 503: upstream trouble"
    message = json.loads(slack.requests[-1]["body"])
    assert message["text"].startswith(":warning: [WARNING] FIRING: High API Latency")
    text = json.dumps(message["blocks"])
    assert "api_latency_ms" in text
    assert "750 (threshold 500)" in text
    assert f"https://console.example/admin/monitoring/alerts/{alert.pk}/" in text
    events = AuditEntry.objects.filter(event__startswith="alert.notification.")
    assert list(events.order_by("id").values_list("event", flat=True)) == [
        "alert.notification.retry",
        "alert.notification.retry",
        "alert.notification.sent",
    ]


def test_webhook_is_signed_and_4xx_is_not_retried(ops):
    with ScriptedHTTP([200]) as ok, ScriptedHTTP([404]) as gone:
        _rule, alert = breach(ops, {"webhook": [ok.url, gone.url]})
        sent, failed = (deliver(n) for n in Notification.objects.filter(alert=alert).order_by("pk"))
    assert (sent.status, failed.status, failed.attempts) == ("sent", "failed", 1)
    assert failed.attempt_log.get().outcome == "failed"
    request = ok.requests[0]
    timestamp = request["headers"]["X-Adminsite-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(
        b"test-signing-secret", f"{timestamp}.".encode() + request["body"], hashlib.sha256
    ).hexdigest()
    assert request["headers"]["X-Adminsite-Signature"] == f"sha256={expected}"
    body = json.loads(request["body"])
    assert body["event"] == "firing"
    assert body["alert"]["value"] == 750
    assert body["alert"]["threshold"] == 500
    assert body["alert"]["rule"] == "High API Latency"


def test_a_timeout_is_retried(ops):
    with ScriptedHTTP(["slow", 200], slow_seconds=2.5) as hook:
        _rule, alert = breach(ops, {"webhook": [hook.url]})
        notification = deliver(Notification.objects.get(alert=alert))
    assert notification.status == "sent"
    first, second = notification.attempt_log.all()
    assert (first.outcome, second.outcome) == ("retry", "sent")
    assert "Timed out" in first.detail


def test_retries_end_with_failed(ops):
    with ScriptedHTTP([500]) as hook:
        _rule, alert = breach(ops, {"webhook": [hook.url]})
        notification = deliver(Notification.objects.get(alert=alert))
    # ALERT_NOTIFICATION_RETRIES = 3: the first try and three retries.
    assert (notification.status, notification.attempts) == ("failed", 4)
    assert list(notification.attempt_log.values_list("outcome", flat=True)) == [
        "retry",
        "retry",
        "retry",
        "failed",
    ]


def test_delivery_runs_once_per_notification(ops):
    with ScriptedHTTP([200]) as hook:
        _rule, alert = breach(ops, {"webhook": [hook.url]})
        notification = Notification.objects.get(alert=alert)
        deliver(notification)
        deliver(notification)  # a redelivered task message
    assert len(hook.requests) == 1
    assert DeliveryAttempt.objects.count() == 1


def test_backoff_doubles(settings):
    settings.ALERT_RETRY_BASE_SECONDS = 10
    assert [tasks.retry_delay(n) for n in range(4)] == [10, 20, 40, 80]
    assert tasks.retry_delay(20) == 3600


def test_a_rule_silence_suppresses_sending_but_not_state(ops):
    with ScriptedHTTP([200]) as hook:
        rule = services.create_rule(
            actor=ops,
            data={
                "name": "Disk",
                "metric": "disk_percent",
                "operator": "gt",
                "threshold": 90,
                "severity": "critical",
                "notification_channels": {"webhook": [hook.url]},
            },
        )
        silence = services.create_silence(
            actor=ops, rule=rule, ends_at=datetime.now(UTC) + timedelta(hours=1), reason="Resize"
        )
        now = datetime.now(UTC)
        storage.write_points([("disk_percent", 95.0, int(now.timestamp() * 1e6) - 1000, "")])
        alerts.evaluate(now=now)
        alert = Alert.objects.get(rule=rule)
        assert alert.status == "firing"
        assert not Notification.objects.exists()
        event = AlertEvent.objects.get(alert=alert, kind="silenced")
        assert "Resize" in event.note
        assert AuditEntry.objects.filter(event="alert.silence.created").exists()

        # Ended: the resolution is sent again.
        services.end_silence(actor=ops, silence=silence)
        services.resolve_alert(actor=ops, alert=alert, note="done")
        (notification,) = Notification.objects.all()
        assert notification.event == "resolved"
        deliver(notification)
    assert len(hook.requests) == 1


def test_a_metric_silence_covers_every_rule_of_the_metric(ops):
    services.create_silence(
        actor=ops,
        metric="api_latency_ms",
        ends_at=datetime.now(UTC) + timedelta(minutes=30),
        reason="Load test",
    )
    _rule, alert = breach(ops, {"email": ["oncall@example.com"]})
    assert alert.status == "firing"
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({}, "rule"),
        ({"metric": "Bad Name"}, "metric"),
        ({"metric": "cpu_percent", "reason": ""}, "reason"),
        ({"metric": "cpu_percent", "ends_at": datetime(2020, 1, 1, tzinfo=UTC)}, "ends_at"),
    ],
)
def test_silence_validation(ops, kwargs, field):
    from django.core.exceptions import ValidationError

    base = {"ends_at": datetime.now(UTC) + timedelta(hours=1), "reason": "maintenance"}
    with pytest.raises(ValidationError) as caught:
        services.create_silence(actor=ops, **{**base, **kwargs})
    assert field in caught.value.message_dict
