"""Alerting in Chromium: create a rule through the rule form (with its live preview and a
validation error on the way), trigger it with track_metric, see it on the monitoring dashboard,
resolve it there with a note through htmx, and read its history on the alert page.
Screenshots of every alerting page go to artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adminsite import roles
from monitoring import seed, services, tasks
from monitoring.metrics import METRICS, flush_buffer, track_metric
from monitoring.models import Alert, AlertRule
from tests.factories import PASSWORD, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)


def beat_flush():
    """What beat does every 2 s: the flush task (which evaluates the rules it wrote for)."""
    flush_buffer()
    tasks.flush_metrics.apply()


def test_create_rule_trigger_it_and_resolve_with_a_note(browsing, screenshot):
    user = StaffFactory(username="ops-alerts", role=roles.OPS, first_name="Olive", last_name="Ops")
    track_metric(METRICS.CELERY_QUEUE_DEPTH, 40)
    beat_flush()

    session = browsing()
    page = session.login(
        user.username, PASSWORD, path="/admin/login/?next=/admin/monitoring/rules/"
    )
    page.goto("/admin/monitoring/rules/")
    screenshot(page, "alert-rules-empty")
    page.get_by_test_id("new-rule").click()
    page.fill("#r-name", "Queue backlog")
    page.fill("#r-metric", METRICS.CELERY_QUEUE_DEPTH)
    page.select_option("#r-operator", "gt")
    page.fill("#r-threshold", "50")
    page.select_option("#r-severity", "critical")
    # The live preview reads the current value: 40 does not cross 50.
    page.wait_for_selector('[data-preview="ok"]')
    assert page.get_by_test_id("preview-value").first.inner_text() == "40"
    page.fill("#r-threshold", "30")
    page.wait_for_selector('[data-preview="fires"]')
    screenshot(page, "alert-rule-form-preview")

    # A bad value is named by the preview as it is typed (the saved form's errors, a 400 page,
    # are checked in tests/monitoring/test_alerting_pages.py).
    page.fill("#r-window", "5")
    page.wait_for_selector("#rule-preview .mon-problems")
    assert "window_seconds: Enter a whole number of seconds from 10" in page.get_by_test_id(
        "rule-preview"
    ).inner_text().replace("\n", " ")
    screenshot(page, "alert-rule-form-errors")
    page.fill("#r-window", "60")
    page.fill("#r-threshold", "50")
    page.get_by_test_id("save-rule").click()
    page.wait_for_url("**/admin/monitoring/rules/")
    rule = AlertRule.objects.get(name="Queue backlog")
    assert (rule.threshold, rule.severity, rule.enabled) == (50.0, "critical", True)
    assert page.locator(f'[data-rule="{rule.pk}"]').is_visible()
    screenshot(page, "alert-rules")

    track_metric(METRICS.CELERY_QUEUE_DEPTH, 120)
    beat_flush()
    alert = Alert.objects.get(rule=rule)
    assert alert.status == "firing"

    page.goto("/admin/monitoring/")
    row = page.locator(f'[data-testid="active-alerts"] [data-alert="{alert.pk}"]')
    row.wait_for()
    assert "Queue backlog" in row.inner_text()
    assert page.get_by_test_id("health").get_attribute("data-overall") == "critical"
    assert page.locator('[data-check="alerts"]').get_attribute("data-health") == "critical"
    screenshot(page, "monitoring-dashboard-alert")

    row.get_by_text("Resolve", exact=True).first.click()
    row.locator(f"#note-{alert.pk}").fill("Scaled the workers")
    row.get_by_role("button", name="Resolve").click()
    page.wait_for_selector('[data-testid="active-alerts"][data-firing="0"]')
    assert "No alert is firing." in page.get_by_test_id("active-alerts").inner_text()
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by, alert.resolution_note) == (
        "resolved",
        user,
        "Scaled the workers",
    )
    screenshot(page, "monitoring-dashboard-resolved")

    page.goto(f"/admin/monitoring/alerts/{alert.pk}/")
    assert page.get_by_test_id("resolution-note").inner_text() == "Scaled the workers"
    kinds = page.locator("[data-event]").evaluate_all("els => els.map(e => e.dataset.event)")
    assert kinds == ["firing", "resolved"]
    screenshot(page, "alert-detail")
    page.goto("/admin/monitoring/alerts/?status=resolved")
    assert page.locator(f'[data-alert="{alert.pk}"]').is_visible()
    screenshot(page, "alert-history")


def test_silence_page_and_acknowledge(browsing, screenshot):
    user = StaffFactory(username="ops-silence", role=roles.OPS)
    # Made by a data migration; transactional tests empty the tables, so the seed's copy.
    rule = services.create_rule(actor=None, data=seed.JOB_RULE)
    track_metric("job_consecutive_failures", 4, tags={"job": "mail.sync"})
    beat_flush()
    alert = Alert.objects.get(rule=rule)
    session = browsing()
    page = session.login(user.username, PASSWORD, path="/admin/login/?next=/admin/monitoring/")
    page.goto(f"/admin/monitoring/alerts/{alert.pk}/")
    page.fill("#ack-note", "Looking at the mail server")
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_selector("text=Looking at the mail server")
    screenshot(page, "alert-detail-acknowledged")

    page.goto("/admin/monitoring/silences/")
    page.select_option("#s-target", f"rule:{rule.pk}")
    until = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    page.fill("#s-ends", until)
    page.fill("#s-reason", "Mail server migration")
    page.get_by_role("button", name="Silence", exact=True).click()
    page.wait_for_url("**/admin/monitoring/silences/")
    assert page.locator("[data-silence]").count() == 1
    screenshot(page, "alert-silences")
