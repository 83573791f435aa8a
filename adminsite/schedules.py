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
    # Backstop of the audit sealer process (manage.py audit_sealer): links entries while the
    # sealer is stopped or restarting. The issue allows an entry to stay unlinked for "a few
    # seconds"; every 5 s keeps the worst case there, and an idle run costs one query.
    "audit.seal_chain": {
        "task": "audit.seal_chain",
        "schedule": timedelta(seconds=5),
        "options": {"expires": 4},
    },
    # Signed head of the audit chain, so that cutting entries off its end is detectable. Daily,
    # as the issue asks; at most a day of the newest entries is covered by the chain alone.
    "audit.checkpoint": {
        "task": "audit.checkpoint",
        "schedule": timedelta(days=1),
        "options": {"expires": 3600},
    },
    # Full verification of the audit chain and its checkpoints (HIPAA: examine the logs). Weekly:
    # it reads every entry, minutes at tens of millions, and tampering stays detectable anyway.
    "audit.verify_chain": {
        "task": "audit.verify_chain",
        "schedule": timedelta(days=7),
        "options": {"expires": 6 * 3600},
    },
    # Retention: archive and purge entries older than AUDIT_RETENTION_DAYS. Daily keeps each run
    # to one day's worth of entries.
    "audit.archive_expired": {
        "task": "audit.archive_expired",
        "schedule": timedelta(days=1),
        "options": {"expires": 6 * 3600},
    },
    # Impersonations past their time limit (or whose staff member lost the permission) are
    # refused at their next request anyway; this closes the record of those whose browser
    # never came back. Every minute keeps a recorded end within a minute of the 30-minute
    # limit; a run with nothing running is one query.
    "impersonation.expire_sessions": {
        "task": "impersonation.expire_sessions",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    # The ticket queue's counters grow by a delta row or two per ticket change; folding them
    # every minute keeps each count a sum over a few thousand rows even at hundreds of
    # changes a minute. A run with nothing to fold is one cheap query.
    "tickets.compact_ticket_counts": {
        "task": "tickets.compact_ticket_counts",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    # SLA warnings (80% of a target) and breaches: the issue asks for a scan every minute,
    # which keeps a breach notice within a minute of the deadline; each run is four
    # set-based UPDATEs on partial indexes plus the alerts that are due.
    "tickets.sla_scan": {
        "task": "tickets.sla_scan",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
    # Moves buffered metric points from Redis into PostgreSQL. Every 2 s keeps charts and the
    # alerting that reads them within seconds of a track_metric call, and keeps the stream
    # short; an idle run is one XRANGE and two small queries.
    "monitoring.flush_metrics": {
        "task": "monitoring.flush_metrics",
        "schedule": timedelta(seconds=2),
        "options": {"expires": 2},
    },
    # Alert rules: every enabled rule in one set-based pass over the rollups. Every 10 s keeps
    # an alert visible within 10 s of the breach even for points that skip the flush (written
    # by the database fallback or the ingestion API), and advances pending periods, no-data
    # and re-notify timers; the flush evaluates the metrics it wrote as well.
    "monitoring.evaluate_alerts": {
        "task": "monitoring.evaluate_alerts",
        "schedule": timedelta(seconds=10),
        "options": {"expires": 9},
    },
    # Raw point partitions: created three days ahead and dropped past the retention. Hourly
    # although one run a day would do, so a missed run never leaves a day without a partition.
    "monitoring.maintain_partitions": {
        "task": "monitoring.maintain_partitions",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3000},
    },
    # Rollups are kept a year; deleting daily keeps each run to one day of minutes.
    "monitoring.purge_rollups": {
        "task": "monitoring.purge_rollups",
        "schedule": timedelta(days=1),
        "options": {"expires": 6 * 3600},
    },
    # CPU, memory, disk every 15 s: fine enough for one-minute chart buckets (four samples).
    "monitoring.collect_system": {
        "task": "monitoring.collect_system",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    # Queue depth every 15 s: a backlog shows within a chart bucket; one LLEN per queue.
    "monitoring.collect_queue_depth": {
        "task": "monitoring.collect_queue_depth",
        "schedule": timedelta(seconds=15),
        "options": {"expires": 14},
    },
    # Background job run records older than JOB_RUN_RETENTION_DAYS (30) go. Daily keeps each
    # run to one day of rows, deleted in batches.
    "adminsite.purge_job_runs": {
        "task": "adminsite.purge_job_runs",
        "schedule": timedelta(days=1),
        "options": {"expires": 6 * 3600},
    },
    # The shop's catalogue reconciled with Stripe. Webhooks keep it live between runs; hourly
    # catches events that were missed or failed, without coming near Stripe's rate limits.
    "shop.sync_catalogue": {
        "task": "shop.sync_catalogue",
        "schedule": timedelta(hours=1),
        "options": {"expires": 3000},
    },
    # Stripe events stored while the broker was unreachable are queued again. Every five
    # minutes bounds that delay; an idle run is one indexed query on the unfinished events.
    "shop.requeue_webhook_events": {
        "task": "shop.requeue_webhook_events",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 240},
    },
    # Active users (signed in within 15 minutes) change slowly: once a minute, one COUNT.
    "monitoring.collect_active_users": {
        "task": "monitoring.collect_active_users",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 50},
    },
}
