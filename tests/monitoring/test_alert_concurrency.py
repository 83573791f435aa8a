"""Two evaluators at once (two threads, two database connections) over the same breach: one
open alert per rule and tag set between them (the partial unique index), one history line per
transition, one notification per destination."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, connections, transaction

from monitoring import alerts, services, storage
from monitoring.models import Alert, AlertEvent, Notification

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(target, count=2):
    barrier = threading.Barrier(count)
    errors = []

    def body():
        try:
            barrier.wait(timeout=10)
            target()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


@pytest.fixture
def deliver_in_process(monkeypatch):
    """Deliveries run in the committing thread instead of going to the broker: a worker of
    the session that picked them up would still be writing delivery attempts while the test
    database is flushed (a deadlock at teardown)."""
    from adminsite.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)


def test_two_evaluators_open_one_alert_per_tag_set(deliver_in_process):
    rule = services.create_rule(
        actor=None,
        data={
            "name": "Latency",
            "metric": "api_latency_ms",
            "operator": "gt",
            "threshold": 500,
            "severity": "warning",
            "notification_channels": {"email": ["ops@example.com"]},
        },
    )
    now = datetime.now(UTC)
    base = int(now.timestamp() * 1e6) - 2_000_000
    points = [("api_latency_ms", 900.0, base + i, f'{{"route":"r{i % 5}"}}') for i in range(50)]
    storage.write_points(points)
    for _round in range(5):
        run_together(lambda: alerts.evaluate(now=now))
    open_alerts = Alert.objects.filter(rule=rule, status="firing")
    assert open_alerts.count() == 5
    assert sorted(open_alerts.values_list("tags_key", flat=True)) == [
        f'{{"route":"r{i}"}}' for i in range(5)
    ]
    assert AlertEvent.objects.filter(kind="firing").count() == 5
    assert Notification.objects.count() == 5

    # Both see the recovery; each alert is resolved once.
    later = now + timedelta(seconds=10)
    storage.write_points(
        [("api_latency_ms", 100.0, int(later.timestamp() * 1e6) - 1000 + i, f'{{"route":"r{i}"}}')
         for i in range(5)]
    )  # fmt: skip
    run_together(lambda: alerts.evaluate(now=later))
    assert Alert.objects.filter(rule=rule, status="resolved").count() == 5
    assert AlertEvent.objects.filter(kind="resolved").count() == 5
    assert Notification.objects.filter(event="resolved").count() == 5


def test_the_database_refuses_a_second_open_alert():
    rule = services.create_rule(
        actor=None,
        data={"name": "x", "metric": "cpu_percent", "operator": "gt", "threshold": 1,
              "severity": "info"},
    )  # fmt: skip
    now = datetime.now(UTC)
    assert services.open_alert(rule=rule, tags_key="", value=2.0, severity="info", now=now)
    assert services.open_alert(rule=rule, tags_key="", value=3.0, severity="info", now=now) is None
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO monitoring_alerts (rule_id, rule_name, metric, condition, tags_key,"
            " status, severity, threshold, started_at, resolution_note, acknowledgement_note,"
            " last_evaluated_at) VALUES (%s, 'x', 'cpu_percent', '', '', 'pending', 'info', 1,"
            " now(), '', '', now())",
            [rule.pk],
        )
