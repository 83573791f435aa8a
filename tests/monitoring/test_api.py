"""POST /api/admin/monitoring/metrics: batches, all or nothing, errors naming index and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from adminsite import roles, services
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db
URL = "/api/admin/monitoring/metrics"


def count(name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM monitoring_points WHERE name = %s", [name])
        return cursor.fetchone()[0]


@pytest.fixture
def ops_client(client):
    client.force_login(StaffFactory(role=roles.OPS))
    return client


def post(client, body, **extra):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **extra)


def test_a_batch_is_stored_with_tags_and_times(ops_client, django_assert_max_num_queries):
    at = (datetime.now(UTC) - timedelta(minutes=3)).isoformat()
    body = [
        {"name": "svc.latency", "value": i, "tags": {"routeName": "x"}, "time": at}
        for i in range(500)
    ]
    with django_assert_max_num_queries(12):
        response = post(ops_client, body)
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 500}
    assert count("svc.latency") == 500
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT tags FROM monitoring_points WHERE name = 'svc.latency'")
        assert cursor.fetchall() == [('{"routeName": "x"}',)]  # tag keys are kept as sent


def test_without_trailing_slash_and_with(ops_client):
    assert post(ops_client, [{"name": "a.b", "value": 1}]).status_code == 202
    assert ops_client.post(URL + "/", data="[]", content_type="application/json").status_code == 202


def test_bad_points_are_named_and_nothing_is_stored(ops_client):
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = [
        {"name": "good.one", "value": 1},
        {"name": "Bad Name", "value": 1},
        {"name": "good.one", "value": "NaN"},
        {"name": "good.one", "value": 1, "tags": {"a": {"b": "c"}}},
        {"name": "good.one", "value": 1, "time": future},
        {"name": "good.one", "value": 1, "time": "2026-01-01T00:00:00"},
        {"name": "good.one"},
        {"name": "good.one", "value": 1, "colour": "red"},
        "not an object",
    ]
    response = post(ops_client, body)
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "name"),
        (2, "value"),
        (3, "tags"),
        (4, "time"),
        (5, "time"),
        (6, "value"),
        (7, "colour"),
        (8, "point"),
    ]
    assert "none were stored" in response.json()["detail"]
    assert count("good.one") == 0


def test_json_nan_and_infinity_are_refused(ops_client):
    body = '[{"name": "x.y", "value": NaN}, {"name": "x.y", "value": Infinity}]'
    response = ops_client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["value", "value"]


def test_over_the_limit_is_413(ops_client):
    body = [{"name": "x", "value": 1}] * 10_001
    response = post(ops_client, body)
    assert response.status_code == 413
    assert "10000" in response.json()["detail"]
    assert post(ops_client, [{"name": "limit.ok", "value": 1}] * 10_000).status_code == 202
    assert count("limit.ok") == 10_000


def test_not_a_list_and_malformed_json(ops_client):
    assert post(ops_client, {"name": "x"}).status_code == 400
    response = ops_client.post(URL, data="[{", content_type="application/json")
    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


def test_token_of_an_ops_user(client):
    user = StaffFactory(role=roles.OPS)
    _token, raw = services.create_api_token(actor=None, user=user)
    response = post(client, [{"name": "tok.ok", "value": 2}], HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 202
    agent = StaffFactory(role=roles.SUPPORT_AGENT)
    client.force_login(agent)
    assert post(client, [{"name": "tok.ok", "value": 2}]).status_code == 403
