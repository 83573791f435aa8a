"""The alerting API: alerts (list with filters, resolve, acknowledge; 409 on a resolved alert),
rule CRUD with camelCase keys and field-naming errors, both path forms, Bearer tokens, the
OpenAPI schema, and the role matrix."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from adminsite import roles
from adminsite.services import create_api_token
from monitoring import alerts, services, storage
from monitoring.models import Alert, AlertRule
from tests.factories import StaffFactory
from tests.roles import assert_access_matrix

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(client):
    user = StaffFactory(role=roles.OPS)
    client.force_login(user)
    return user


def post(client, url, body=None, method="post"):
    return getattr(client, method)(
        url, data=json.dumps(body) if body is not None else "", content_type="application/json"
    )


def firing(name="Latency", metric="api_latency_ms", severity="warning"):
    rule = services.create_rule(
        actor=None,
        data={"name": name, "metric": metric, "operator": "gt", "threshold": 1,
              "severity": severity},
    )  # fmt: skip
    now = datetime.now(UTC)
    storage.write_points([(metric, 5.0, int(now.timestamp() * 1e6) - 1000, '{"job":"a_b"}')])
    alerts.evaluate(now=now)
    return rule, Alert.objects.get(rule=rule)


def test_list_alerts_with_filters(client, ops, django_assert_max_num_queries):
    rule, alert = firing()
    firing("Disk", "disk_percent", "critical")
    with django_assert_max_num_queries(8):
        body = client.get("/api/admin/monitoring/alerts").json()
    assert body["count"] == 2
    first = next(a for a in body["results"] if a["id"] == alert.pk)
    assert first["ruleName"] == "Latency"
    assert first["tags"] == {"job": "a_b"}  # tag names as written, not camelized
    assert first["status"] == "firing"
    assert first["startedAt"].endswith("Z")
    assert client.get("/api/admin/monitoring/alerts/?severity=critical").json()["count"] == 1
    assert client.get(f"/api/admin/monitoring/alerts?rule={rule.pk}").json()["count"] == 1
    assert client.get("/api/admin/monitoring/alerts?status=resolved").json()["count"] == 0
    assert client.get("/api/admin/monitoring/alerts?since=2099-01-01").json()["count"] == 0
    bad = client.get("/api/admin/monitoring/alerts?status=burning&since=soon")
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"status", "since"}


def test_resolve_with_note_then_409(client, ops):
    _rule, alert = firing()
    response = post(client, f"/api/admin/monitoring/alerts/{alert.pk}/resolve", {"note": "Fixed"})
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["resolutionNote"]) == ("resolved", "Fixed")
    assert body["resolvedBy"]["id"] == ops.pk
    again = post(client, f"/api/admin/monitoring/alerts/{alert.pk}/resolve/")
    assert again.status_code == 409
    assert again.json()["detail"].startswith(f"Alert {alert.pk} is already resolved")
    assert post(client, "/api/admin/monitoring/alerts/999999/resolve").status_code == 404
    assert post(client, f"/api/admin/monitoring/alerts/{alert.pk}/resolve", {"nope": 1}).json()[
        "errors"
    ] == {"nope": ["Unknown field. Allowed fields: note."]}


def test_acknowledge(client, ops):
    _rule, alert = firing()
    response = post(client, f"/api/admin/monitoring/alerts/{alert.pk}/acknowledge/", {"note": "me"})
    assert response.status_code == 200
    assert response.json()["acknowledgementNote"] == "me"
    assert post(client, f"/api/admin/monitoring/alerts/{alert.pk}/acknowledge").status_code == 409


def test_rule_crud(client, ops, django_assert_max_num_queries):
    created = post(
        client,
        "/api/admin/monitoring/rules",
        {
            "name": "Queue backlog",
            "metric": "celery_queue_depth",
            "operator": "gte",
            "threshold": 100,
            "severity": "warning",
            "criticalThreshold": 1000,
            "aggregation": "max",
            "windowSeconds": 300,
            "tagFilter": {"queue_name": "celery"},
            "notificationChannels": {"slack": ["https://hooks.slack.example/T1"]},
        },
    )
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert rule["criticalThreshold"] == 1000
    assert rule["tagFilter"] == {"queue_name": "celery"}
    assert rule["noData"] == "ok"
    url = f"/api/admin/monitoring/rules/{rule['id']}"
    assert client.get(url + "/").json()["name"] == "Queue backlog"

    patched = post(client, url, {"threshold": 200, "enabled": False}, method="patch")
    assert patched.status_code == 200
    assert (patched.json()["threshold"], patched.json()["enabled"]) == (200, False)

    replaced = post(
        client,
        url,
        {"name": "Queue", "metric": "celery_queue_depth", "operator": "gt", "threshold": 5,
         "severity": "info"},
        method="put",
    )  # fmt: skip
    assert replaced.status_code == 200
    assert replaced.json()["criticalThreshold"] is None  # back to the default
    assert replaced.json()["aggregation"] == "last"

    with django_assert_max_num_queries(8):
        listing = client.get("/api/admin/monitoring/rules").json()
    assert listing["count"] == 2  # and the seeded job rule

    assert client.delete(url).status_code == 204
    assert not AlertRule.objects.filter(pk=rule["id"]).exists()
    assert client.get(url).status_code == 404


def test_rule_errors_name_each_field_in_camel_case(client, ops):
    response = post(
        client,
        "/api/admin/monitoring/rules",
        {"name": "", "metric": "cpu_percent", "operator": "bigger", "threshold": "x",
         "severity": "warning", "windowSeconds": 1, "recoveryThreshold": 9},
    )  # fmt: skip
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert set(errors) == {"name", "operator", "threshold", "windowSeconds"}
    assert "Allowed values: gt, gte, lt, lte, eq" in errors["operator"][0]
    assert "windowSeconds" in response.json()["detail"]
    assert post(client, "/api/admin/monitoring/rules", [1]).status_code == 400


def test_bearer_token_and_schema(client, ops):
    _token, raw = create_api_token(actor=ops, user=ops)
    client.logout()
    response = client.get("/api/admin/monitoring/rules", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert client.get("/api/admin/monitoring/rules").status_code == 401
    schema = client.get("/api/schema").content.decode()
    for path in (
        "/api/admin/monitoring/alerts:",
        "/api/admin/monitoring/alerts/{id}/resolve:",
        "/api/admin/monitoring/alerts/{id}/acknowledge:",
        "/api/admin/monitoring/rules:",
        "/api/admin/monitoring/rules/{id}:",
    ):
        assert path in schema


@pytest.mark.parametrize(
    ("url", "method", "data", "status"),
    [
        ("/api/admin/monitoring/alerts", "get", None, 200),
        ("/api/admin/monitoring/rules", "get", None, 200),
        ("/api/admin/monitoring/rules", "post", {}, 400),
        ("/api/admin/monitoring/rules/999999", "get", None, 404),
        ("/api/admin/monitoring/alerts/999999/resolve", "post", {}, 404),
        ("/api/admin/monitoring/alerts/999999/acknowledge", "post", {}, 404),
    ],
)
def test_role_matrix(client, url, method, data, status):
    assert_access_matrix(
        client, url, allowed={"admin", "ops"}, method=method, data=data, status=status
    )
