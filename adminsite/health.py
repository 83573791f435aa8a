"""Liveness and readiness checks: database, Redis and the Celery worker heartbeat."""

from __future__ import annotations

import socket
import time

import redis
from django.conf import settings
from django.db import connection

HEARTBEAT_KEY = "adminsite:worker-heartbeat"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def record_worker_heartbeat() -> None:
    client = _redis()
    client.hset(HEARTBEAT_KEY, socket.gethostname(), str(time.time()))


def check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "down"
        return f"database unreachable: {exc.__class__.__name__}"
    return None


def check_redis() -> str | None:
    try:
        _redis().ping()
    except Exception as exc:  # noqa: BLE001
        return f"redis unreachable: {exc.__class__.__name__}"
    return None


def worker_heartbeats() -> dict[str, float]:
    raw = _redis().hgetall(HEARTBEAT_KEY)
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}


def check_workers() -> str | None:
    try:
        beats = worker_heartbeats()
    except Exception as exc:  # noqa: BLE001
        return f"worker heartbeat unreadable: {exc.__class__.__name__}"
    if not beats:
        return "no worker heartbeat recorded"
    age = time.time() - max(beats.values())
    if age > settings.WORKER_HEARTBEAT_MAX_AGE:
        return f"newest worker heartbeat is {int(age)} s old"
    return None


def readiness() -> dict[str, str | None]:
    redis_problem = check_redis()
    return {
        "database": check_database(),
        "redis": redis_problem,
        "workers": redis_problem and "unknown: redis is down" or check_workers(),
    }
