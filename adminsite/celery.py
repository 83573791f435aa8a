"""The Celery application. Periodic schedules live in :mod:`adminsite.schedules`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "adminsite.settings")

app = Celery("adminsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _load_schedule(sender, **kwargs):  # noqa: ARG001
    from adminsite.schedules import BEAT_SCHEDULE

    sender.conf.beat_schedule = BEAT_SCHEDULE


app.on_after_configure.connect(_load_schedule)
