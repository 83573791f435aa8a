"""The monitoring dashboard in Chromium: every predefined metric's chart is drawn from the
seeded history without browser errors (CSP included), the range picker swaps the data through
htmx and keeps the range in the address bar, the 10 s poll redraws, the grid fits a phone, and
the explorer draws a tag-filtered metric. Screenshots go to artifacts/screenshots/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adminsite import roles
from adminsite.seed import SeedContext
from monitoring import seed, storage
from monitoring.metrics import PREDEFINED
from tests.factories import PASSWORD, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


def drawn(page) -> int:
    return page.locator(".mon-chart[data-drawn] .main-svg").count()


def test_dashboard_draws_every_chart_and_switches_range(browsing, screenshot):
    ctx = SeedContext(options={}, show_progress=False)
    ctx.step = "metrics"
    seed.seed_metric_history(ctx)
    user = StaffFactory(username="ops-e2e", role=roles.OPS)
    session = browsing()
    page = session.login(user.username, PASSWORD, path="/admin/login/?next=/admin/monitoring/")
    page.goto("/admin/monitoring/")
    page.wait_for_function(
        f"document.querySelectorAll('.mon-chart[data-drawn]').length === {len(PREDEFINED)}"
    )
    assert page.locator(".mon-chart[data-drawn]").count() == len(PREDEFINED)
    # One-minute buckets over the last hour: about 60 per chart.
    assert (
        55 <= int(page.locator('[data-chart="api_latency_ms"]').get_attribute("data-drawn")) <= 61
    )
    assert page.get_by_test_id("health").get_attribute("data-overall") in {
        "healthy",
        "warning",
        "critical",
    }
    screenshot(page, "monitoring-dashboard")

    page.locator('[data-range="24h"]').click()
    page.wait_for_function("document.getElementById('live').dataset.range === '24h'")
    page.wait_for_function(
        "Number(document.querySelector('[data-chart=\"api_latency_ms\"]').dataset.drawn) > 80"
    )
    assert page.url.endswith("/admin/monitoring/?range=24h")

    # The poll: a point written now shows up within the 10 s refresh, range unchanged.
    now = datetime.now(UTC)
    storage.write_points([("celery_queue_depth", 777.0, int(now.timestamp() * 1_000_000), "")])
    page.wait_for_function(
        "JSON.parse(document.getElementById('monitoring-data').textContent)"
        ".some(c => c.name === 'celery_queue_depth' && c.max.includes(777))",
        timeout=15_000,
    )
    assert page.url.endswith("?range=24h")
    screenshot(page, "monitoring-dashboard-24h")

    phone = browsing(viewport=PHONE)
    phone_page = phone.login(user.username, PASSWORD)
    phone_page.goto("/admin/monitoring/")
    phone_page.wait_for_function("document.querySelectorAll('.mon-chart[data-drawn]').length > 0")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"] + 1
    screenshot(phone_page, "monitoring-dashboard-phone")


def test_explorer_draws_a_tag_filtered_metric(browsing, screenshot):
    base = datetime.now(UTC) - timedelta(minutes=30)
    points = []
    for minute in range(30):
        micros = int((base + timedelta(minutes=minute)).timestamp() * 1_000_000)
        points.append(("shop.checkout_ms", 100.0 + minute, micros, '{"region":"eu"}'))
        points.append(("shop.checkout_ms", 900.0, micros, '{"region":"us"}'))
    storage.write_points(points)
    user = StaffFactory(username="ops-explorer", role=roles.OPS)
    session = browsing()
    page = session.login(user.username, PASSWORD)
    page.goto("/admin/monitoring/explorer/?metric=shop.checkout_ms")
    page.wait_for_function("document.querySelector('.mon-chart[data-drawn]') !== null")
    page.fill("#f-tags", "region=eu")
    page.locator("#f-tags").press("Enter")
    page.wait_for_function(
        "JSON.parse(document.getElementById('explorer-data').textContent).max.every(v => v < 900)"
    )
    assert "tags=region%3Deu" in page.url
    page.wait_for_function("document.querySelector('.mon-chart[data-drawn]') !== null")
    screenshot(page, "monitoring-explorer")
