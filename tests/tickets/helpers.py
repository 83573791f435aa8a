"""Helpers for the tickets tests."""

from __future__ import annotations

from functools import partial

from celery import Task


def _task_of(callback) -> Task | None:
    """The Celery task whose ``delay`` a captured callback is, if it is one."""
    if isinstance(callback, partial):
        task = getattr(callback.func, "__self__", None)
        if isinstance(task, Task):
            return task
    return None


def queued_tasks(callbacks) -> list[tuple[str, tuple]]:
    """The Celery tasks among captured on-commit callbacks, as (task name, args)."""
    return [(_task_of(cb).name, cb.args) for cb in callbacks if _task_of(cb) is not None]


def run_queued_tasks(callbacks) -> list[str]:
    """Run the captured tasks here, through Celery's own machinery (``Task.apply``), the way a
    worker would after the commit; returns their names."""
    names = []
    for callback in callbacks:
        task = _task_of(callback)
        if task is not None:
            task.apply(args=callback.args, throw=True)
            names.append(task.name)
    return names


def run_with_tasks(capture, action):
    """Run ``action()``, then every Celery task it queued after commit, then the tasks those
    queued, and so on (a chain like scan → announce → email), each through ``Task.apply``.
    ``capture`` is pytest-django's ``django_capture_on_commit_callbacks``. Returns
    ``action``'s result and the names of the tasks run, in order."""
    with capture() as callbacks:
        result = action()
    names: list[str] = []
    while callbacks:
        with capture() as more:
            names += run_queued_tasks(callbacks)
        callbacks = more
    return result, names
