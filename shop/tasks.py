"""Celery entry points of the shop: ids in, call a service.

Stripe events: each delivery stores its event and, unless a drain is already queued or
running, queues ``process_webhook_events``, which processes stored events in batches until
none is left (should several drains run at once, rows are taken with SKIP LOCKED). An event
that fails is recorded on the event and retried alone by ``process_webhook_event`` with
backoff; after the last retry it stays "failed" in the console, with "Reprocess". Both are
idempotent: an event already processed is skipped.
"""

from __future__ import annotations

import time

from celery import shared_task

from shop import services, stripe_api


@shared_task(
    name="shop.process_webhook_event",
    autoretry_for=(Exception,),
    retry_backoff=10,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=6,
    time_limit=120,
    soft_time_limit=90,
    ignore_result=True,
)
def process_webhook_event(event_id: int) -> str:
    return services.process_event(event_id)


# Long enough for tens of thousands of events; a longer backlog continues in the next drain.
DRAIN_SECONDS = 50
# A drain that has caught up (its batch was not full) waits this long before taking the next
# one, so that events arriving a few at a time are processed dozens per transaction rather than
# one or two, each batch paying its fixed queries: the worker then leaves the CPU to the web
# processes receiving them, for at most this much added latency.
CAUGHT_UP_WAIT_SECONDS = 0.05


@shared_task(
    name="shop.process_webhook_events",
    time_limit=120,
    soft_time_limit=90,
    max_retries=0,
    ignore_result=True,
)
def process_webhook_events() -> int:
    """Process stored Stripe events in batches until none is left (or the time is up, and a
    new drain takes over). See services.DRAIN_KEY for the flag that spares deliveries from
    queueing drains while this one runs."""
    started = time.monotonic()
    done = 0
    try:
        while time.monotonic() - started < DRAIN_SECONDS:
            taken = services.process_received()
            if not taken:
                services.drain_caught_up()
                taken = services.process_received()  # stored before the flag went
                if not taken:
                    return done
            services.drain_running()
            done += len(taken)
            if len(taken) < services.BATCH_SIZE:
                time.sleep(CAUGHT_UP_WAIT_SECONDS)
    except Exception:
        services.drain_caught_up()  # so that the next delivery queues a new drain
        raise
    process_webhook_events.delay()
    return done


@shared_task(
    name="shop.requeue_webhook_events",
    time_limit=120,
    soft_time_limit=100,
    max_retries=0,
    ignore_result=True,
)
def requeue_webhook_events() -> int:
    """Backstop: events stored while the broker was unreachable are queued again."""
    return services.requeue_unprocessed()


@shared_task(
    name="shop.sync_catalogue",
    autoretry_for=(stripe_api.StripeUnavailableError,),
    retry_backoff=60,
    max_retries=3,
    time_limit=1800,
    soft_time_limit=1700,
    ignore_result=True,
)
def sync_catalogue(run_id: int | None = None) -> None:
    """The hourly reconciliation (``run_id`` None) or a "sync now" run from the console."""
    if not stripe_api.configured():
        return
    services.sync_catalogue(trigger="schedule" if run_id is None else "console", run_id=run_id)
