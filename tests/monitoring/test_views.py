"""The monitoring dashboard, the explorer, /metrics, the dashboard panel and the seed step."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from adminsite import roles, services
from adminsite.seed import SeedContext
from monitoring import queries, seed, storage
from monitoring.metrics import METRICS, PREDEFINED
from monitoring.models import MetricRollup
from tests.factories import StaffFactory
from tests.roles import assert_access_matrix

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(client):
    user = StaffFactory(role=roles.OPS)
    client.force_login(user)
    return user


def write(name, values, *, minutes_ago=5, tags=""):
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago)
    micros = int(base.timestamp() * 1_000_000)
    storage.write_points([(name, float(v), micros + i, tags) for i, v in enumerate(values)])


def test_dashboard_shows_health_and_chart_data(client, ops, django_assert_max_num_queries):
    write(METRICS.API_LATENCY, [100, 200, 300])
    # Part 1's eight, plus the firing counts (shared by health and the alerts card) and the
    # active alerts list.
    with django_assert_max_num_queries(10):
        response = client.get("/admin/monitoring/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="health"' in html
    for check in ("database", "redis", "workers", "queue", "disk"):
        assert f'data-check="{check}"' in html
    data = response.context["charts"]
    assert [c["name"] for c in data] == list(PREDEFINED)
    latency = data[0]
    assert latency["count"] == [3]
    assert (latency["min"], latency["max"], latency["avg"]) == ([100.0], [300.0], [200.0])
    assert "<script>" not in html.replace(
        '<script id="monitoring-data" type="application/json">', ""
    )


def test_range_is_kept_in_the_htmx_poll_and_partial_is_served(client, ops):
    write(METRICS.CPU, [10, 20], minutes_ago=180)
    response = client.get("/admin/monitoring/?range=6h")
    assert 'hx-get="/admin/monitoring/?range=6h"' in response.content.decode()
    cpu = next(c for c in response.context["charts"] if c["name"] == METRICS.CPU)
    assert cpu["count"] == [2]
    one_hour = client.get("/admin/monitoring/?range=1h")
    assert next(c for c in one_hour.context["charts"] if c["name"] == METRICS.CPU)["count"] == []
    partial = client.get("/admin/monitoring/?range=6h", headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="live"')
    assert "monitoring-data" in body and "<html" not in body


def test_unknown_range_falls_back_to_one_hour(client, ops):
    assert client.get("/admin/monitoring/?range=99y").context["range"].key == "1h"


def test_explorer_filters_by_tags(client, ops, django_assert_max_num_queries):
    write("shop.checkout_ms", [10, 20], tags='{"region":"eu"}')
    write("shop.checkout_ms", [1000], tags='{"region":"us"}')
    with django_assert_max_num_queries(8):
        response = client.get(
            "/admin/monitoring/explorer/?metric=shop.checkout_ms&tags=region%3Deu"
        )
    assert response.status_code == 200
    chart = response.context["chart"]
    assert (chart["max"], chart["count"]) == ([20.0], [2])
    every = client.get("/admin/monitoring/explorer/?metric=shop.checkout_ms").context["chart"]
    assert every["max"] == [1000.0]
    assert "shop.checkout_ms" in response.context["metrics"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("metric=Bad Name", "is not a valid name"),
        ("metric=ok&tags=novalue", "must look like key=value"),
    ],
)
def test_explorer_bad_input_is_a_clear_400(client, ops, query, message):
    response = client.get(f"/admin/monitoring/explorer/?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_prometheus_exposition_needs_a_token_with_view_permission(client):
    write(METRICS.API_LATENCY, [42], minutes_ago=1, tags='{"route":"api-me"}')
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    _t, agent_token = services.create_api_token(
        actor=None, user=StaffFactory(role=roles.SUPPORT_AGENT)
    )
    assert (
        client.get("/metrics", headers={"Authorization": f"Bearer {agent_token}"}).status_code
        == 403
    )
    _t, token = services.create_api_token(actor=None, user=StaffFactory(role=roles.OPS))
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    body = response.content.decode()
    assert "# TYPE adminsite_api_latency_ms gauge" in body
    assert 'adminsite_api_latency_ms{route="api-me"} 42.0' in body


def test_pages_role_matrix(client):
    assert_access_matrix(client, "/admin/monitoring/", allowed={"admin", "ops"})
    assert_access_matrix(client, "/admin/monitoring/explorer/", allowed={"admin", "ops"})


def test_dashboard_panel_is_shown_to_ops(client, ops):
    response = client.get("/admin/panels/monitoring/")
    assert response.status_code == 200
    assert 'data-testid="monitoring-panel"' in response.content.decode()


def test_request_middleware_records_latency_per_route(client, ops):
    from monitoring.metrics import default_buffer

    default_buffer().send()
    before = len(default_buffer()._pending)
    client.get("/admin/monitoring/")
    pending = list(default_buffer()._pending)
    default_buffer()._pending.clear()
    new = pending[before:]
    assert any(
        name == "api_latency_ms" and '"route":"monitoring:dashboard"' in tags
        for name, _value, _micros, tags in new
    )
    assert any(name == "error_rate" and value == 0.0 for name, value, _micros, _tags in new)


def test_seed_backfills_a_day_once():
    from adminsite.management.commands.seed_demo import discover_steps

    assert "metrics" in {step.name for step in discover_steps()}
    ctx = SeedContext(options={}, show_progress=False)
    ctx.step = "metrics"
    seed.seed_metric_history(ctx)
    assert ctx.counts["metrics"]["created"] == len(PREDEFINED)
    rows = MetricRollup.objects.filter(name=METRICS.API_LATENCY).count()
    assert 1430 <= rows <= 1441
    seed.seed_metric_history(ctx)
    assert ctx.counts["metrics"]["existing"] == len(PREDEFINED)
    charts = queries.dashboard_charts(queries.RANGES["24h"])
    assert all(len(c["t"]) >= 90 for c in charts)
    sample = MetricRollup.objects.filter(name=METRICS.API_LATENCY).first()
    assert sample.min <= sample.p95 <= sample.max
    assert json.loads(json.dumps(sample.hist))
