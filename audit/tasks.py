"""Celery entry points of the audit trail; schedules in adminsite/schedules.py."""

from __future__ import annotations

import logging

from celery import shared_task

from audit import chain, services

logger = logging.getLogger("audit")


class ChainBrokenError(RuntimeError):
    """The weekly verification found the audit chain broken; the message names the entry."""


def on_chain_broken(report: chain.Report) -> None:
    """Raise the alarm about a broken chain. The alerting module connects here when it lands
    (a critical alert to the on-call channel); until then the CRITICAL log line below and the
    failed task run are the alarm."""
    logger.critical(
        "audit chain verification failed: %s",
        report.summary(),
        extra={"audit_report": report.as_dict()},
    )


@shared_task(
    name="audit.seal_chain", ignore_result=True, time_limit=120, soft_time_limit=100, max_retries=0
)
def seal_chain() -> int:
    """Backstop of the sealer process: links entries while it is stopped or restarting.
    Usually finds nothing."""
    return services.seal_pending()


@shared_task(
    name="audit.checkpoint", ignore_result=True, time_limit=300, soft_time_limit=240, max_retries=0
)
def checkpoint() -> int | None:
    services.seal_pending()
    made = services.create_checkpoint()
    return made.seq if made is not None else None


# A full walk checks >100,000 entries per second: a few minutes for tens of millions.
@shared_task(
    name="audit.verify_chain", time_limit=4 * 3600, soft_time_limit=4 * 3600 - 60, max_retries=0
)
def verify_chain() -> dict:
    report = chain.verify()
    if not report.ok:
        on_chain_broken(report)
        raise ChainBrokenError(report.summary())
    logger.info(
        "audit chain verified",
        extra={"entries": report.entries, "seconds": round(report.seconds, 1)},
    )
    return report.as_dict()


@shared_task(
    name="audit.archive_expired", time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60, max_retries=0
)
def archive_expired() -> dict:
    result = services.archive_and_purge()
    if result.plan.legal_hold:
        logger.warning(
            "audit retention purge skipped: legal hold in force", extra={"due": result.plan.count}
        )
    return {
        "purged": result.purged,
        "archive": result.archive_path,
        "legal_hold": result.plan.legal_hold,
    }
