"""Every periodic schedule of the project, in one place, each with why it runs that often."""

from datetime import timedelta

BEAT_SCHEDULE = {
    # /readyz reports workers as down when the newest heartbeat is older than
    # WORKER_HEARTBEAT_MAX_AGE (90 s); every 30 s leaves room for two missed beats.
    "adminsite.heartbeat": {
        "task": "adminsite.heartbeat",
        "schedule": timedelta(seconds=30),
        "options": {"expires": 25},
    },
}
