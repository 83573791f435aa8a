"""Alert evaluation and the lifecycle: every operator and aggregation, windows, tag sets,
pending periods, hysteresis, the second (critical) level, no-data modes, re-notification,
acknowledgement, manual resolution, errors recorded on the rule, and the runbook's SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection

from adminsite import roles
from audit.models import AuditEntry
from monitoring import alerts, services, storage
from monitoring.models import Alert, AlertEvent, AlertRule, AlertStatus, Notification
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 26, 12, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ops():
    return StaffFactory(role=roles.OPS)


def micros(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000)


def write(name, values, *, at=None, tags="", step=timedelta(seconds=1)):
    """``values`` as points ending at ``at`` (default: 5 s ago), one per ``step``."""
    end = at or NOW - timedelta(seconds=5)
    start = end - step * (len(values) - 1)
    storage.write_points(
        [(name, float(v), micros(start + step * i), tags) for i, v in enumerate(values)]
    )


def rule(ops=None, **fields):
    data = {
        "name": "Latency",
        "metric": "api_latency_ms",
        "operator": "gt",
        "threshold": 500,
        "severity": "warning",
        **fields,
    }
    return services.create_rule(actor=ops, data=data)


def open_alerts(r):
    return list(Alert.objects.filter(rule=r, status__in=["pending", "firing"]))


@pytest.mark.parametrize(
    ("operator", "threshold", "value", "fires"),
    [
        ("gt", 500, 501, True),
        ("gt", 500, 500, False),
        ("gte", 500, 500, True),
        ("gte", 500, 499.9, False),
        ("lt", 10, 9, True),
        ("lt", 10, 10, False),
        ("lte", 10, 10, True),
        ("lte", 10, 10.1, False),
        ("eq", 3, 3, True),
        ("eq", 3, 3.5, False),
    ],
)
def test_each_operator(ops, operator, threshold, value, fires):
    r = rule(ops, operator=operator, threshold=threshold)
    write("api_latency_ms", [value])
    report = alerts.evaluate()
    assert report.opened == (1 if fires else 0)
    assert len(open_alerts(r)) == (1 if fires else 0)
    r.refresh_from_db()
    assert r.last_value == value
    assert r.last_evaluated_at == NOW
    assert r.last_error == ""


# Points over the last three minutes: 10, 20, ... 100 at 12:00:07 ... (see write below).
@pytest.mark.parametrize(
    ("aggregation", "window", "expected"),
    [
        ("last", 60, 600.0),
        ("avg", 180, 350.0),
        ("min", 180, 100.0),
        ("max", 180, 600.0),
        ("sum", 180, 2100.0),
        ("count", 180, 6.0),
        ("p95", 180, 600.0),
        # Sub-minute windows read raw points exactly: the last 35 s hold 500 and 600.
        ("avg", 35, 550.0),
        ("min", 35, 500.0),
        ("max", 35, 600.0),
        ("sum", 35, 1100.0),
        ("count", 35, 2.0),
        ("p95", 35, 595.0),
    ],
)
def test_each_aggregation(ops, aggregation, window, expected):
    r = rule(ops, aggregation=aggregation, window_seconds=window, threshold=0)
    # One point every 25 s, the newest 5 s ago: 100 at 11:58:20 ... 600 at 12:00:25.
    write("api_latency_ms", [100, 200, 300, 400, 500, 600], step=timedelta(seconds=25))
    alerts.evaluate()
    r.refresh_from_db()
    assert r.last_value == pytest.approx(expected, rel=0.06 if aggregation == "p95" else 1e-9)


def test_window_excludes_older_points_and_last_needs_a_fresh_value(ops):
    r = rule(ops, aggregation="last", window_seconds=60)
    write("api_latency_ms", [900], at=NOW - timedelta(seconds=90))
    alerts.evaluate()
    assert open_alerts(r) == []
    r.refresh_from_db()
    assert r.last_value is None


def test_one_alert_per_tag_set_and_tag_filter_narrows(ops):
    every = rule(ops, name="Any route")
    tickets = rule(ops, name="Tickets only", tag_filter="route=tickets")
    write("api_latency_ms", [700], tags='{"route":"tickets"}')
    write("api_latency_ms", [800], tags='{"route":"shop"}')
    write("api_latency_ms", [100], tags='{"route":"home"}')
    alerts.evaluate()
    assert sorted(a.tags_key for a in open_alerts(every)) == [
        '{"route":"shop"}',
        '{"route":"tickets"}',
    ]
    assert [a.tags_key for a in open_alerts(tickets)] == ['{"route":"tickets"}']
    assert open_alerts(tickets)[0].tags == {"route": "tickets"}


def test_background_job_rule_from_the_migration_alerts_per_job():
    job_rule = AlertRule.objects.get(name="Background job failing")
    assert (job_rule.metric, job_rule.operator, job_rule.threshold) == (
        "job_consecutive_failures",
        "gte",
        3.0,
    )
    assert (job_rule.severity, job_rule.aggregation, job_rule.auto_resolve) == (
        "critical",
        "last",
        True,
    )
    write("job_consecutive_failures", [1, 2, 3], tags='{"job":"sync_mail"}')
    write("job_consecutive_failures", [4], tags='{"job":"send_digest"}')
    write("job_consecutive_failures", [2], tags='{"job":"purge"}')
    alerts.evaluate()
    firing = open_alerts(job_rule)
    assert sorted(a.tags["job"] for a in firing) == ["send_digest", "sync_mail"]
    assert {a.status for a in firing} == {"firing"}
    assert {a.severity for a in firing} == {"critical"}

    # A success resets the counter: that job's alert resolves, the other stays.
    write(
        "job_consecutive_failures", [0], tags='{"job":"sync_mail"}', at=NOW - timedelta(seconds=1)
    )
    alerts.evaluate()
    assert [a.tags["job"] for a in open_alerts(job_rule)] == ["send_digest"]


def test_pending_period_fires_only_after_the_breach_lasts(ops, frozen):
    r = rule(ops, pending_seconds=60)
    write("api_latency_ms", [900])
    alerts.evaluate()
    (alert,) = open_alerts(r)
    assert alert.status == "pending"
    assert not Notification.objects.exists()

    frozen.move_to(NOW + timedelta(seconds=30))
    write("api_latency_ms", [950], at=NOW + timedelta(seconds=29))
    alerts.evaluate()
    alert.refresh_from_db()
    assert alert.status == "pending"
    assert alert.value == 950

    frozen.move_to(NOW + timedelta(seconds=60))
    write("api_latency_ms", [960], at=NOW + timedelta(seconds=59))
    report = alerts.evaluate()
    assert report.fired == 1
    alert.refresh_from_db()
    assert alert.status == "firing"
    assert alert.fired_at == NOW + timedelta(seconds=60)
    assert [e.kind for e in alert.events.all()] == ["pending", "firing"]


def test_pending_alert_clears_when_the_value_recovers(ops, frozen):
    r = rule(ops, pending_seconds=120)
    write("api_latency_ms", [900])
    alerts.evaluate()
    frozen.move_to(NOW + timedelta(seconds=20))
    write("api_latency_ms", [100], at=NOW + timedelta(seconds=19))
    alerts.evaluate()
    alert = Alert.objects.get(rule=r)
    assert alert.status == "resolved"
    assert alert.fired_at is None
    assert [e.kind for e in alert.events.all()] == ["pending", "cleared"]
    assert not Notification.objects.exists()  # it never fired: nobody is told


def test_hysteresis_resolves_only_below_the_recovery_threshold(ops, frozen):
    r = rule(ops, recovery_threshold=400, notification_channels={"email": ["ops@example.com"]})
    write("api_latency_ms", [700])
    alerts.evaluate()
    (alert,) = open_alerts(r)

    frozen.move_to(NOW + timedelta(seconds=10))
    write("api_latency_ms", [450], at=NOW + timedelta(seconds=9))
    alerts.evaluate()
    alert.refresh_from_db()
    assert alert.status == "firing"  # under 500 but not yet under 400
    assert alert.value == 450

    frozen.move_to(NOW + timedelta(seconds=20))
    write("api_latency_ms", [380], at=NOW + timedelta(seconds=19))
    report = alerts.evaluate()
    assert report.resolved == 1
    alert.refresh_from_db()
    assert alert.status == "resolved"
    assert alert.resolved_by is None
    assert alert.resolution_note == "Recovered."
    assert list(Notification.objects.values_list("event", flat=True)) == ["firing", "resolved"]
    assert AuditEntry.objects.filter(event="alert.resolved", object_pk=str(alert.pk)).exists()


def test_without_auto_resolve_a_person_must_resolve(ops, frozen):
    r = rule(ops, auto_resolve=False)
    write("api_latency_ms", [700])
    alerts.evaluate()
    frozen.move_to(NOW + timedelta(seconds=10))
    write("api_latency_ms", [100], at=NOW + timedelta(seconds=9))
    alerts.evaluate()
    (alert,) = open_alerts(r)
    assert alert.status == "firing"
    services.resolve_alert(actor=ops, alert=alert, note="Cache warmed up")
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.resolution_note) == (
        "resolved",
        ops,
        "Cache warmed up",
    )
    with pytest.raises(services.AlertStateError, match="already resolved"):
        services.resolve_alert(actor=ops, alert=alert, note="again")


def test_second_threshold_escalates_to_critical(ops, frozen):
    r = rule(ops, critical_threshold=1000, notification_channels={"email": ["ops@example.com"]})
    write("api_latency_ms", [700])
    alerts.evaluate()
    (alert,) = open_alerts(r)
    assert (alert.severity, alert.threshold) == ("warning", 500)
    services.acknowledge_alert(actor=ops, alert=alert, note="Looking")

    frozen.move_to(NOW + timedelta(seconds=10))
    write("api_latency_ms", [1500], at=NOW + timedelta(seconds=9))
    report = alerts.evaluate()
    assert report.escalated == 1
    alert.refresh_from_db()
    assert (alert.severity, alert.threshold, alert.value) == ("critical", 1000, 1500)
    # Escalation is told even though someone acknowledged the warning, and needs its own
    # acknowledgement: re-notification resumes until then.
    assert list(Notification.objects.values_list("event", flat=True)) == ["firing", "escalated"]
    assert alert.acknowledged_at is None
    assert list(alert.events.values_list("kind", flat=True)) == [
        "firing",
        "acknowledged",
        "escalated",
    ]


def test_a_critical_level_straight_away_opens_a_critical_alert(ops):
    r = rule(ops, critical_threshold=1000)
    write("api_latency_ms", [1200])
    alerts.evaluate()
    (alert,) = open_alerts(r)
    assert alert.severity == "critical"


@pytest.mark.parametrize(
    ("mode", "expected_status"),
    [("ok", "resolved"), ("keep", "firing"), ("alerting", "firing")],
)
def test_no_data_modes_for_an_open_alert(ops, frozen, mode, expected_status):
    r = rule(ops, no_data=mode)
    write("api_latency_ms", [700])
    alerts.evaluate()
    (alert,) = open_alerts(r)
    frozen.move_to(NOW + timedelta(minutes=5))  # nothing new: the last value left the window
    alerts.evaluate()
    alert.refresh_from_db()
    assert alert.status == expected_status


def test_no_data_alerting_fires_for_a_silent_metric(ops):
    r = rule(ops, metric="email_sync_failures", no_data="alerting")
    quiet = rule(ops, name="quiet ok", metric="email_sync_failures")
    alerts.evaluate()
    (alert,) = open_alerts(r)
    assert (alert.status, alert.value, alert.tags_key) == ("firing", None, "")
    assert open_alerts(quiet) == []


def test_renotify_until_acknowledged(ops, frozen):
    r = rule(
        ops, renotify_seconds=300, notification_channels={"slack": ["https://hooks.example/x"]}
    )
    write("api_latency_ms", [700])
    alerts.evaluate()
    (alert,) = open_alerts(r)
    for minutes in (2, 6):
        frozen.move_to(NOW + timedelta(minutes=minutes))
        write("api_latency_ms", [700], at=NOW + timedelta(minutes=minutes, seconds=-1))
        alerts.evaluate()
    assert list(Notification.objects.values_list("event", flat=True)) == ["firing", "renotify"]
    services.acknowledge_alert(actor=ops, alert=alert, note="On it")
    frozen.move_to(NOW + timedelta(minutes=12))
    write("api_latency_ms", [700], at=NOW + timedelta(minutes=12, seconds=-1))
    alerts.evaluate()
    assert Notification.objects.count() == 2
    alert.refresh_from_db()
    assert (alert.acknowledged_by, alert.acknowledgement_note) == (ops, "On it")
    with pytest.raises(services.AlertStateError, match="already acknowledged"):
        services.acknowledge_alert(actor=ops, alert=alert)


def test_a_manually_resolved_alert_reopens_if_the_breach_continues(ops, frozen):
    r = rule(ops)
    write("api_latency_ms", [700])
    alerts.evaluate()
    (first,) = open_alerts(r)
    services.resolve_alert(actor=ops, alert=first, note="")
    frozen.move_to(NOW + timedelta(seconds=10))
    write("api_latency_ms", [700], at=NOW + timedelta(seconds=9))
    alerts.evaluate()
    (second,) = open_alerts(r)
    assert second.pk != first.pk


def test_history_of_every_transition(ops, frozen):
    r = rule(ops, pending_seconds=10)
    write("api_latency_ms", [700])
    alerts.evaluate()
    frozen.move_to(NOW + timedelta(seconds=10))
    write("api_latency_ms", [700], at=NOW + timedelta(seconds=9))
    alerts.evaluate()
    (alert,) = open_alerts(r)
    services.acknowledge_alert(actor=ops, alert=alert, note="mine")
    services.resolve_alert(actor=ops, alert=alert, note="fixed")
    events = list(AlertEvent.objects.filter(alert=alert).values_list("kind", "actor", "note"))
    assert events == [
        ("pending", None, ""),
        ("firing", None, ""),
        ("acknowledged", ops.pk, "mine"),
        ("resolved", ops.pk, "fixed"),
    ]


def test_disabling_or_deleting_a_rule_resolves_its_alerts_and_keeps_history(ops):
    r = rule(ops)
    write("api_latency_ms", [700])
    alerts.evaluate()
    services.set_rule_enabled(actor=ops, rule=r, enabled=False)
    assert open_alerts(r) == []
    assert alerts.evaluate().rules == 1  # only the seeded job rule is still enabled
    services.delete_rule(actor=ops, rule=r)
    alert = Alert.objects.get(rule_name="Latency")
    assert (alert.rule_id, alert.status, alert.resolution_note) == (
        None,
        "resolved",
        "Rule disabled.",
    )
    assert AuditEntry.objects.filter(event="alert_rule.deleted").exists()


def test_errors_are_recorded_on_the_rule(ops):
    # A rule inserted from SQL with channels that are not a map: evaluation says so on it.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO alert_rules (name, metric, operator, threshold, severity,"
            " notification_channels, enabled) VALUES ('Bad', 'cpu_percent', 'gt', 1, 'warning',"
            " '[\"ops@example.com\"]'::jsonb, true) RETURNING id"
        )
        bad_id = cursor.fetchone()[0]
    good = rule(ops)
    write("cpu_percent", [50])
    write("api_latency_ms", [900])
    report = alerts.evaluate()
    bad = AlertRule.objects.get(pk=bad_id)
    assert "notification_channels" in bad.last_error
    assert bad.last_error_at == NOW
    assert report.errors.keys() == {bad_id}
    assert not Alert.objects.filter(rule_id=bad_id).exists()  # nothing half-written
    assert len(open_alerts(good)) == 1


def test_runbook_insert_works_verbatim_and_takes_effect():
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO alert_rules (name, metric, operator, threshold, severity, notification_channels, enabled)
VALUES ('High API Latency', 'api_latency_ms', 'gt', 500, 'warning',
        '{"email": ["admin@example.com"]}'::jsonb, true);"""
        )
    r = AlertRule.objects.get(name="High API Latency")
    assert (r.aggregation, r.window_seconds, r.pending_seconds, r.no_data, r.auto_resolve) == (
        "last",
        60,
        0,
        "ok",
        True,
    )
    write("api_latency_ms", [750])
    alerts.evaluate()
    (alert,) = open_alerts(r)
    assert (alert.status, alert.severity, alert.value) == ("firing", "warning", 750)
    (notification,) = Notification.objects.filter(alert=alert)
    assert (notification.channel, notification.target) == ("email", "admin@example.com")


def test_sql_insert_with_a_bad_vocabulary_is_refused():
    from django.db import IntegrityError

    with pytest.raises(IntegrityError), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO alert_rules (name, metric, operator, threshold, severity,"
            " notification_channels, enabled) VALUES ('x', 'cpu_percent', 'ge', 1,"
            " 'warning', '{}'::jsonb, true)"
        )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"operator": "greater"}, "operator", "Allowed values: gt, gte, lt, lte, eq"),
        ({"threshold": "abc"}, "threshold", "Enter a number."),
        ({"threshold": None}, "threshold", "required"),
        ({"metric": "API Latency"}, "metric", "lowercase"),
        ({"severity": "fatal"}, "severity", "info, warning, critical"),
        ({"aggregation": "median"}, "aggregation", "p95"),
        ({"window_seconds": 5}, "window_seconds", "from 10 to"),
        ({"renotify_seconds": 30}, "renotify_seconds", "at least 60"),
        ({"recovery_threshold": 600}, "recovery_threshold", "at or below the threshold"),
        ({"critical_threshold": 400}, "critical_threshold", "above the threshold"),
        (
            {"severity": "critical", "critical_threshold": 900},
            "critical_threshold",
            "already critical",
        ),
        ({"tag_filter": "route"}, "tag_filter", "key=value"),
        ({"notification_channels": {"pager": ["x"]}}, "notification_channels", "pager"),
        (
            {"notification_channels": {"email": ["not-an-address"]}},
            "notification_channels",
            "not an email address",
        ),
        (
            {"notification_channels": {"webhook": ["ftp://x.example/"]}},
            "notification_channels",
            "http(s) URL",
        ),
        ({"colour": "red"}, "colour", "Unknown field"),
    ],
)
def test_rule_validation_names_the_field(ops, fields, field, message):
    with pytest.raises(ValidationError) as caught:
        rule(ops, **fields)
    assert message in caught.value.message_dict[field][0]
    assert not AlertRule.objects.filter(name="Latency").exists()


def test_rule_changes_are_audited(ops):
    r = rule(ops)
    r = services.update_rule(actor=ops, rule=r, data={"threshold": 800})
    entry = AuditEntry.objects.filter(event="alert_rule.updated").get()
    assert entry.changes == {"threshold": [500.0, 800.0]}
    copy = services.duplicate_rule(actor=ops, rule=r)
    assert (copy.name, copy.enabled, copy.threshold) == ("Latency (copy)", False, 800)


def test_status_vocabulary_is_the_lifecycle():
    assert AlertStatus.values == ["pending", "firing", "resolved"]
