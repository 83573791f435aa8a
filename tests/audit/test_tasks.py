"""The audit trail's Celery tasks, run by a real worker where it matters: the sealing backstop,
the daily checkpoint, and the weekly verification failing loudly."""

from __future__ import annotations

import logging

import pytest
from django.db import connection

from adminsite.schedules import BEAT_SCHEDULE
from audit import tasks
from audit.models import AuditCheckpoint, ChainLink
from audit.services import record
from tests.audit.conftest import as_superuser, seal
from tests.processes import wait_until


def test_every_audit_task_is_scheduled_and_registered():
    from adminsite.celery import app

    app.loader.import_default_modules()
    for name in (
        "audit.seal_chain",
        "audit.checkpoint",
        "audit.verify_chain",
        "audit.archive_expired",
    ):
        assert BEAT_SCHEDULE[name]["task"] == name
        assert name in app.tasks
    assert BEAT_SCHEDULE["audit.seal_chain"]["schedule"].total_seconds() <= 5


def _insert_without_sealing() -> int:
    """An entry whose writer died between its commit and its sealing: committed and queued
    (by the insert trigger), never linked."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditentry (event, action, source, actor_name, actor_email, impersonator_name, "
            "user_agent, object_pk, object_repr, changes_text, timestamp) "
            "VALUES ('ticket.created', 4, 'web', 'sam', '', '', '', '', '', '', now()) RETURNING id"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_backstop_task_links_what_no_writer_sealed(celery_worker):
    entry_id = _insert_without_sealing()
    assert not ChainLink.objects.filter(entry_id=entry_id).exists()
    tasks.seal_chain.delay()
    wait_until(
        lambda: ChainLink.objects.filter(entry_id=entry_id).exists(),
        what="the worker linking the entry",
    )


@pytest.mark.django_db(transaction=True)
def test_a_broken_chain_fails_the_weekly_task_in_the_worker(celery_worker):
    entries = [record("ticket.updated", data={"n": n}) for n in range(3)]
    seal()
    good = tasks.verify_chain.delay().get(timeout=60)
    assert good["ok"] is True
    as_superuser(
        "UPDATE audit_auditentry SET object_repr = 'rewritten' WHERE id = %s", [entries[1].pk]
    )

    result = tasks.verify_chain.delay()
    result.get(timeout=60, propagate=False)
    assert result.state == "FAILURE"
    assert isinstance(result.result, tasks.ChainBrokenError)
    assert f"entry {entries[1].pk} " in str(result.result) and "was altered" in str(result.result)
    assert "audit chain verification failed" in celery_worker.log()


def test_the_broken_chain_hook_logs_at_critical(db, caplog):
    entry = record("ticket.updated")
    seal()
    as_superuser("UPDATE audit_auditentry SET event = 'ticket.deleted' WHERE id = %s", [entry.pk])
    with caplog.at_level(logging.CRITICAL, logger="audit"):
        result = tasks.verify_chain.apply()
    assert result.failed()
    assert isinstance(result.result, tasks.ChainBrokenError)
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and f"entry {entry.pk} " in critical[0].getMessage()
    assert critical[0].audit_report["ok"] is False


def test_the_checkpoint_task_seals_first_then_signs_the_head(db):
    _insert_without_sealing()
    result = tasks.checkpoint.apply()
    assert result.successful()
    head = ChainLink.objects.order_by("-seq").first()
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.kind, checkpoint.seq, bytes(checkpoint.hash)) == (
        "daily",
        head.seq,
        bytes(head.hash),
    )
    assert tasks.checkpoint.apply().result is None  # nothing new: no second checkpoint
