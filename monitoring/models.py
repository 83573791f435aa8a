"""Metric storage. Raw points live in a table range-partitioned by day (created in SQL by the
migrations and kept by monitoring/storage.py); every chart reads the per-minute rollups."""

from __future__ import annotations

from django.db import models


class Metric(models.Model):
    """One raw point of the partitioned table ``monitoring_points`` (read-only through the ORM).

    Not managed by Django: the table is ``PARTITION BY RANGE (time)``, written with binary COPY
    only, and has no primary key (a unique index would have to include ``time`` and would slow
    COPY; duplicates are prevented at the flush instead). ``time`` is declared the primary key
    here only because the ORM needs one. The model also carries the monitoring permissions:
    ``view_metric`` (dashboard, /metrics) and ``add_metric`` (ingestion API).
    """

    time = models.DateTimeField(primary_key=True)
    name = models.TextField()
    value = models.FloatField()
    tags = models.JSONField(null=True)

    class Meta:
        managed = False
        db_table = "monitoring_points"

    def __str__(self) -> str:
        return f"{self.name}={self.value} at {self.time:%Y-%m-%d %H:%M:%S}"


class MetricRollup(models.Model):
    """Count, sum, min, max, last and an approximate p95 of one metric and tag set in one minute.

    ``hist`` is a sparse log-bucket histogram (bucket index -> count, 10 % wide buckets), so that
    minutes merge exactly across flushes and ``p95`` stays within about 5 % of the true value.
    """

    name = models.TextField()
    tags_key = models.TextField(default="", blank=True)  # canonical JSON of the tags, '' for none
    tags = models.JSONField(null=True, blank=True)
    minute = models.DateTimeField()
    count = models.BigIntegerField()
    sum = models.FloatField()
    min = models.FloatField()
    max = models.FloatField()
    last = models.FloatField()
    last_at = models.DateTimeField()
    p95 = models.FloatField()
    hist = models.JSONField(default=dict)

    class Meta:
        db_table = "monitoring_rollups"
        constraints = [
            models.UniqueConstraint(
                fields=["name", "tags_key", "minute"], name="monitoring_rollup_key"
            )
        ]
        # Charts read these columns only: an index-only scan skips the wide histogram rows.
        indexes = [
            models.Index(
                fields=["name", "minute"],
                name="monitoring_rollup_chart",
                include=["count", "sum", "min", "max", "p95"],
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.tags_key} {self.minute:%Y-%m-%d %H:%M}"


class FlushCursor(models.Model):
    """How far the flush got in one Redis stream: the id of the last entry committed. Updated in
    the transaction that writes the points, so a flush that dies after its commit and before
    trimming the stream is never written again."""

    stream = models.TextField(primary_key=True)
    last_id = models.TextField(default="")

    class Meta:
        db_table = "monitoring_flush_cursor"

    def __str__(self) -> str:
        return f"{self.stream} at {self.last_id or 'start'}"
