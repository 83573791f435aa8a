"""/healthz (liveness) and /readyz (database, Redis and a live Celery worker)."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from adminsite import health
from adminsite.tasks import heartbeat
from tests.processes import CeleryWorker, wait_until, worker_database_url


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_healthz_is_json_and_needs_no_database(client, path):
    # No django_db mark: pytest-django would fail the test if liveness touched the database.
    response = client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/readyz", "/readyz/"])
def test_readyz_is_ready_with_database_redis_and_a_real_worker(client, celery_worker, path):
    host = socket.gethostname()
    before = health.worker_heartbeats().get(host, 0.0)

    # Through the broker to the worker process and back into Redis: the worker really runs.
    heartbeat.delay()
    wait_until(
        lambda: health.worker_heartbeats().get(host, 0.0) > before,
        what="the worker recording a heartbeat",
    )
    response = client.get(path)

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok", "workers": "ok"},
    }
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_names_redis_when_redis_is_down(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url
    health.record_worker_heartbeat()
    assert client.get("/readyz").status_code == 200

    redis_server.stop()
    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["redis", "workers"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("redis unreachable")
    assert body["checks"]["workers"] == "unknown: redis is down"


@pytest.mark.django_db
def test_readyz_names_workers_when_no_heartbeat_was_ever_recorded(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "ok", "workers": "no worker heartbeat recorded"},
        "down": ["workers"],
    }


@pytest.mark.django_db
def test_readyz_names_workers_when_the_newest_heartbeat_is_stale(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url
    settings.WORKER_HEARTBEAT_MAX_AGE = 90
    with time_machine.travel(timezone.now() - timedelta(seconds=120), tick=False):
        health.record_worker_heartbeat()

    response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["workers"]
    assert body["checks"]["workers"].startswith("newest worker heartbeat is 1")
    assert body["checks"]["workers"].endswith(" s old")


@pytest.mark.django_db
def test_readyz_accepts_a_heartbeat_just_inside_the_limit(client, settings, redis_server):
    settings.REDIS_URL = redis_server.url
    settings.WORKER_HEARTBEAT_MAX_AGE = 90
    with time_machine.travel(time.time() - 60, tick=False):
        health.record_worker_heartbeat()

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["workers"] == "ok"


@pytest.mark.django_db
def test_a_starting_worker_records_a_heartbeat_unasked(settings, redis_server, tmp_path):
    # adminsite.celery sends one heartbeat on worker_ready, so /readyz is green right after
    # `make run` rather than at beat's first tick. A fresh worker on an empty Redis shows it.
    settings.REDIS_URL = redis_server.url
    worker = CeleryWorker(
        database_url=worker_database_url(),
        redis_url=redis_server.url,
        key_prefix="",
        log_path=tmp_path / "worker.log",
    ).start()
    try:
        wait_until(health.worker_heartbeats, what="a heartbeat from the starting worker")
    finally:
        worker.stop()
