"""The Celery application. Periodic schedules live in :mod:`adminsite.schedules`."""

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

# The base class of every task: the overlap lock of periodic tasks (adminsite/jobs.py).
app = Celery("adminsite", task_cls="adminsite.jobs:JobTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _load_schedule(sender, **kwargs):  # noqa: ARG001
    from adminsite.schedules import BEAT_SCHEDULE

    # adminsite/schedules.py is where schedules belong; a CELERY_BEAT_SCHEDULE in the settings
    # (an environment's own extra job) is kept, and the jobs page lists both.
    sender.conf.beat_schedule = {**(sender.conf.beat_schedule or {}), **BEAT_SCHEDULE}


app.on_after_configure.connect(_load_schedule)


@worker_ready.connect
def _heartbeat_on_start(sender, **kwargs):  # noqa: ARG001
    """Beat once as soon as a worker is up, through the broker like the scheduled beats, so
    /readyz turns green right after start instead of at beat's first tick."""
    sender.app.send_task("adminsite.heartbeat")
