"""Built-in collectors run by beat (monitoring/tasks.py): system resources, Celery queue depth
and active users. Each records through track_metric like any other caller."""

from __future__ import annotations

from datetime import timedelta

import psutil
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from monitoring.metrics import METRICS, track_metric

ACTIVE_WINDOW = timedelta(minutes=15)
CELERY_QUEUES = ("celery",)


def collect_system() -> dict[str, float]:
    values = {
        # Since the previous call in this process (beat runs it every 15 s): no sleeping here.
        METRICS.CPU: psutil.cpu_percent(interval=None),
        METRICS.MEMORY: psutil.virtual_memory().percent,
        METRICS.DISK: psutil.disk_usage(str(settings.BASE_DIR)).percent,
    }
    for name, value in values.items():
        track_metric(name, value)
    return values


def queue_depth() -> int:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    prefix = settings.REDIS_KEY_PREFIX
    pipe = client.pipeline(transaction=False)
    for queue in CELERY_QUEUES:
        pipe.llen(f"{prefix}{queue}")
    return int(sum(pipe.execute()))


def collect_queue_depth() -> int:
    depth = queue_depth()
    track_metric(METRICS.CELERY_QUEUE_DEPTH, depth)
    return depth


def active_users() -> int:
    since = timezone.now() - ACTIVE_WINDOW
    return get_user_model().objects.filter(is_active=True, last_login__gte=since).count()


def collect_active_users() -> int:
    count = active_users()
    track_metric(METRICS.ACTIVE_USERS, count)
    return count
