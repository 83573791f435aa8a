"""The alerting console pages: rules (list, create with validation errors, edit, enable and
disable, duplicate, delete, live preview), the alert history with filters, the alert page,
resolve and acknowledge (plain and htmx), silences, the dashboard's active-alerts card and
health, the home dashboard panel. Query counts on every list."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from adminsite import roles
from monitoring import alerts, services, storage
from monitoring.models import Alert, AlertRule, Silence
from tests.factories import StaffFactory
from tests.roles import assert_access_matrix

pytestmark = pytest.mark.django_db

RULE_POST = {
    "name": "Slow API",
    "metric": "api_latency_ms",
    "operator": "gt",
    "threshold": "500",
    "severity": "warning",
    "aggregation": "avg",
    "window_seconds": "300",
    "pending_seconds": "0",
    "no_data": "ok",
    "renotify_seconds": "0",
    "auto_resolve": "on",
    "enabled": "on",
    "channel_email": "ops@example.com",
}


@pytest.fixture
def ops(client):
    user = StaffFactory(role=roles.OPS, first_name="Olive", last_name="Ops")
    client.force_login(user)
    return user


def write(name, value, *, tags=""):
    now = datetime.now(UTC)
    storage.write_points([(name, float(value), int(now.timestamp() * 1e6) - 2000, tags)])


def make_rule(**fields):
    data = {"name": "Latency", "metric": "api_latency_ms", "operator": "gt", "threshold": 500,
            "severity": "warning", **fields}  # fmt: skip
    return services.create_rule(actor=None, data=data)


def firing_alert(**fields):
    rule = make_rule(**fields)
    write(rule.metric, 900)
    alerts.evaluate()
    return rule, Alert.objects.get(rule=rule)


def test_rule_list_shows_rules_and_errors(client, ops, django_assert_max_num_queries):
    for i in range(6):
        make_rule(name=f"Rule {i}", tag_filter={"route": f"r{i}"})
    AlertRule.objects.filter(name="Rule 3").update(last_error="ProgrammingError: boom")
    with django_assert_max_num_queries(8):
        response = client.get("/admin/monitoring/rules/")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('data-rule="') == 7  # and the seeded "Background job failing"
    assert "ProgrammingError: boom" in html
    assert "Background job failing" in html


def test_create_rule_through_the_form(client, ops):
    response = client.post("/admin/monitoring/rules/new/", RULE_POST)
    assert response.status_code == 303
    rule = AlertRule.objects.get(name="Slow API")
    assert (rule.aggregation, rule.window_seconds, rule.threshold) == ("avg", 300, 500.0)
    assert rule.notification_channels == {"email": ["ops@example.com"]}
    assert rule.enabled and rule.auto_resolve


def test_form_errors_name_the_fields_and_keep_the_input(client, ops):
    bad = {**RULE_POST, "threshold": "lots", "metric": "API latency", "channel_email": "nope"}
    response = client.post("/admin/monitoring/rules/new/", bad)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="e-threshold">Enter a number.' in html
    assert 'id="e-metric">Use lowercase letters' in html
    assert "&#x27;nope&#x27; is not an email address" in html
    assert 'value="lots"' in html  # what was typed stays
    assert not AlertRule.objects.filter(name="Slow API").exists()


def test_edit_toggle_duplicate_delete(client, ops):
    rule = make_rule()
    page = client.get(f"/admin/monitoring/rules/{rule.pk}/")
    assert page.status_code == 200
    assert 'value="Latency"' in page.content.decode()
    response = client.post(f"/admin/monitoring/rules/{rule.pk}/", {**RULE_POST, "name": "Renamed"})
    assert response.status_code == 303
    rule.refresh_from_db()
    assert rule.name == "Renamed"

    client.post(f"/admin/monitoring/rules/{rule.pk}/toggle/")
    rule.refresh_from_db()
    assert rule.enabled is False

    response = client.post(f"/admin/monitoring/rules/{rule.pk}/duplicate/")
    copy = AlertRule.objects.get(name="Renamed (copy)")
    assert response["Location"] == f"/admin/monitoring/rules/{copy.pk}/"

    client.post(f"/admin/monitoring/rules/{rule.pk}/delete/")
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    assert client.post("/admin/monitoring/rules/999999/delete/").status_code == 404


def test_live_preview_shows_the_value_and_whether_it_fires(client, ops):
    write("api_latency_ms", 700, tags='{"route":"tickets"}')
    write("api_latency_ms", 100, tags='{"route":"shop"}')
    params = {**RULE_POST, "aggregation": "last", "window_seconds": "60"}
    response = client.get("/admin/monitoring/rules/preview/", params, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-preview="fires"' in html
    assert "for 1 of 2 tag sets" in html
    assert "route=tickets" in html
    quiet = client.get("/admin/monitoring/rules/preview/", {**params, "threshold": "5000"})
    assert 'data-preview="ok"' in quiet.content.decode()
    broken = client.get("/admin/monitoring/rules/preview/", {**params, "threshold": "x"})
    assert "<strong>threshold</strong>: Enter a number." in broken.content.decode()
    assert not AlertRule.objects.filter(name="preview").exists()  # nothing is kept


def test_alert_history_filters_and_query_count(client, ops, django_assert_max_num_queries):
    rule, alert = firing_alert()
    other, _ = firing_alert(name="CPU", metric="cpu_percent", threshold=10, severity="critical")
    services.resolve_alert(actor=ops, alert=alert, note="fixed")
    with django_assert_max_num_queries(9):
        response = client.get("/admin/monitoring/alerts/")
    assert response.content.decode().count('data-alert="') == 2
    firing = client.get("/admin/monitoring/alerts/", {"status": "firing"})
    assert firing.content.decode().count('data-alert="') == 1
    by_rule = client.get("/admin/monitoring/alerts/", {"rule": rule.pk, "status": "resolved"})
    assert f'data-alert="{alert.pk}"' in by_rule.content.decode()
    critical = client.get(
        "/admin/monitoring/alerts/", {"severity": "critical"}, HTTP_HX_REQUEST="true"
    )
    assert critical.content.decode().startswith('\n<section id="results"')
    bad = client.get("/admin/monitoring/alerts/", {"since": "yesterday", "severity": "fatal"})
    assert bad.status_code == 400
    assert "Use a date" in bad.content.decode()


def test_alert_page_resolve_with_note_and_conflict(client, ops, django_assert_max_num_queries):
    _rule, alert = firing_alert(notification_channels={"email": ["a@example.com"]})
    with django_assert_max_num_queries(10):
        page = client.get(f"/admin/monitoring/alerts/{alert.pk}/")
    html = page.content.decode()
    assert 'data-status="firing"' in html
    assert 'data-event="firing"' in html
    assert 'data-notification="' in html

    client.post(f"/admin/monitoring/alerts/{alert.pk}/acknowledge/", {"note": "Olive on it"})
    alert.refresh_from_db()
    assert alert.acknowledged_by == ops
    response = client.post(
        f"/admin/monitoring/alerts/{alert.pk}/resolve/",
        {"note": "Restarted the pool", "next": "/admin/monitoring/"},
    )
    assert response["Location"] == "/admin/monitoring/"
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.resolution_note) == (
        "resolved",
        ops,
        "Restarted the pool",
    )
    again = client.post(f"/admin/monitoring/alerts/{alert.pk}/resolve/", HTTP_HX_REQUEST="true")
    assert again.status_code == 409
    assert json.loads(again["HX-Trigger"]) == {"alertsChanged": {"alert": alert.pk}}
    page = client.get(f"/admin/monitoring/alerts/{alert.pk}/").content.decode()
    assert "Restarted the pool" in page
    assert "Olive on it" in page


def test_htmx_resolve_from_the_dashboard(client, ops):
    _rule, alert = firing_alert()
    response = client.post(
        f"/admin/monitoring/alerts/{alert.pk}/resolve/", {"note": "ok"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 204
    assert json.loads(response["HX-Trigger"]) == {"alertsChanged": {"alert": alert.pk}}
    panel = client.get("/admin/monitoring/active-alerts/").content.decode()
    assert "No alert is firing." in panel


def test_dashboard_active_alerts_and_health(client, ops):
    make_rule(name="Warn", metric="cpu_percent", threshold=10)
    write("cpu_percent", 50)
    alerts.evaluate()
    response = client.get("/admin/monitoring/")
    html = response.content.decode()
    assert 'data-testid="active-alerts" data-firing="1"' in html
    assert 'data-count="warning">1 warning' in html
    checks = {c["name"]: c for c in response.context["checks"]}
    assert checks["alerts"]["health"] == "warning"
    assert response.context["overall"] in {"warning", "critical"}

    make_rule(name="Crit", metric="disk_percent", threshold=10, severity="critical")
    write("disk_percent", 95)
    alerts.evaluate()
    response = client.get("/admin/monitoring/", HTTP_HX_REQUEST="true")
    checks = {c["name"]: c for c in response.context["checks"]}
    assert checks["alerts"] == {
        "name": "alerts",
        "label": "Alerts",
        "health": "critical",
        "detail": "1 critical · 1 warning firing",
    }
    assert response.context["overall"] == "critical"
    assert 'id="resolve-' in response.content.decode()


def test_home_dashboard_panel_counts_firing_alerts(client, ops):
    firing_alert(severity="critical")
    html = client.get("/admin/panels/monitoring/").content.decode()
    assert 'data-count="critical">1 critical' in html
    assert 'data-testid="monitoring-panel-active"' in html


def test_silences_page_create_and_end(client, ops, django_assert_max_num_queries):
    rule = make_rule()
    until = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/admin/monitoring/silences/new/",
        {"target": f"rule:{rule.pk}", "ends_at": until, "reason": "Upgrade"},
    )
    assert response.status_code == 303
    silence = Silence.objects.get()
    assert (silence.rule, silence.reason) == (rule, "Upgrade")
    client.post(
        "/admin/monitoring/silences/new/",
        {"target": "metric:disk_percent", "ends_at": until, "reason": "Resize"},
    )
    with django_assert_max_num_queries(9):
        page = client.get("/admin/monitoring/silences/")
    assert page.content.decode().count('data-silence="') == 2
    bad = client.post("/admin/monitoring/silences/new/", {"target": "", "reason": ""})
    assert bad.status_code == 400
    assert "Choose a rule or a metric to silence." in bad.content.decode()
    client.post(f"/admin/monitoring/silences/{silence.pk}/end/")
    silence.refresh_from_db()
    assert silence.ends_at <= datetime.now(UTC)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/monitoring/rules/",
        "/admin/monitoring/rules/new/",
        "/admin/monitoring/alerts/",
        "/admin/monitoring/silences/",
        "/admin/monitoring/active-alerts/",
    ],
)
def test_only_ops_and_admin_open_alerting_pages(client, url):
    assert_access_matrix(client, url, allowed={"admin", "ops"})


def test_seed_creates_the_demo_rules_once():
    from adminsite.seed import SeedContext
    from monitoring import seed

    for _ in range(2):
        ctx = SeedContext(options={}, show_progress=False)
        ctx.step = "alert_rules"
        seed.seed_alert_rules(ctx)
    names = set(AlertRule.objects.values_list("name", flat=True))
    assert {
        "High API latency",
        "Error rate",
        "Disk almost full",
        "Email sync failures",
        "Background job failing",
    } <= names
    assert AlertRule.objects.filter(name="High API latency").count() == 1
    # The disk rule fires on one point, as the seed's note says.
    write("disk_percent", 97)
    alerts.evaluate()
    disk = Alert.objects.get(rule__name="Disk almost full")
    assert (disk.status, disk.severity) == ("firing", "critical")


def test_active_alerts_firing_first_then_by_severity(client, ops):
    make_rule(name="Pending one", metric="cpu_percent", threshold=1, pending_seconds=300)
    make_rule(name="Warn", metric="memory_percent", threshold=1)
    make_rule(name="Crit", metric="disk_percent", threshold=1, severity="critical")
    for metric in ("cpu_percent", "memory_percent", "disk_percent"):
        write(metric, 50)
    alerts.evaluate()
    response = client.get("/admin/monitoring/active-alerts/")
    names = [a.rule_name for a in response.context["active_alerts"]]
    assert names == ["Crit", "Warn", "Pending one"]
