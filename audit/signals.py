"""Signal receivers: sign-in events from django.contrib.auth and the audit context of Celery
tasks. Connected in :meth:`audit.apps.AuditConfig.ready`."""

from __future__ import annotations

import contextlib

from celery.signals import task_postrun, task_prerun
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

from audit import context
from audit.services import record

_task_tokens: dict[str, object] = {}


def on_logged_in(sender, request, user, **kwargs):
    # The request's lazy user is still the anonymous one at this point: name the user signing in.
    record("auth.login", target=user, actor=user)


def on_logged_out(sender, request, user, **kwargs):
    if user is not None:
        record("auth.logout", target=user, actor=user)


def on_login_failed(sender, credentials, request=None, **kwargs):
    # Django has already replaced the password in ``credentials`` with asterisks.
    username = str(credentials.get("username", ""))[:150]
    record("auth.login_failed", data={"username": username})


def on_task_prerun(sender=None, task_id=None, task=None, **kwargs):
    name = getattr(task, "name", None) or getattr(sender, "name", "unknown")
    token = context.enter(
        context.AuditContext(actor=context.SYSTEM, request_id=task_id, source=f"task:{name}"[:200])
    )
    if task_id is not None:
        _task_tokens[task_id] = token


def on_task_postrun(sender=None, task_id=None, **kwargs):
    token = _task_tokens.pop(task_id, None)
    if token is not None:
        # ValueError: set in another context (a task run eagerly from a thread): nothing to restore.
        with contextlib.suppress(ValueError):
            context.leave(token)


def connect() -> None:
    user_logged_in.connect(on_logged_in, dispatch_uid="audit.login")
    user_logged_out.connect(on_logged_out, dispatch_uid="audit.logout")
    user_login_failed.connect(on_login_failed, dispatch_uid="audit.login_failed")
    task_prerun.connect(on_task_prerun, dispatch_uid="audit.task_prerun", weak=False)
    task_postrun.connect(on_task_postrun, dispatch_uid="audit.task_postrun", weak=False)
