"""The audit trail's tables: one append-only table for model diffs and domain events, and the
signed checkpoints of its hash chain.

``AuditEntry`` is django-auditlog's log entry model for this project
(``AUDITLOG_LOGENTRY_MODEL = "audit.AuditEntry"``): auditlog writes field diffs of registered
models into it, ``audit.services.record`` writes domain events into it, and both end up in one
hash chain (``audit.chain``) and one viewer.

The columns fall into three groups, which matter for tamper evidence (see ``audit.chain``):

* content: id, time, event, action, source, target type and id, actor and impersonator ids,
  request id, port. Chained directly.
* identity (who, personal): actor name and email, impersonator name, IP address, user agent.
  Chained through ``identity_digest``, so a GDPR erasure can blank them later.
* subject (what, may be personal): target text, field changes, extra data. Chained through
  ``subject_digest``, for the same reason.

The chain itself lives beside the entries, in ``ChainLink`` (seq, entry, prev_hash, hash and the
two group digests), written once by the sealing step. Keeping it out of the entry rows means an
entry is written exactly once: sealing inserts a narrow link row instead of rewriting the wide,
heavily indexed entry (which would double every index write and leave a dead row behind).
The sealing step finds the entries to link by the transaction that wrote them: an ``xid``
column (default ``pg_current_xact_id()``) that the models leave to the database (migration
0007, :mod:`audit.chain`).
"""

from __future__ import annotations

from auditlog.models import AbstractLogEntry, LogEntryManager
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

EVENT_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$"


class AuditEntryManager(LogEntryManager):
    """django-auditlog's manager, with every entry it writes completed from the audit context
    (actor, impersonator, IP, user agent, request id) and named like a domain event."""

    def log_create(self, instance, force_log: bool = False, **kwargs):
        from audit import services

        if kwargs.get("changes") is None and not force_log:
            return None
        return super().log_create(
            instance, force_log=force_log, **services.model_diff_fields(instance, kwargs)
        )

    def log_m2m_changes(self, changed_queryset, instance, operation, field_name, **kwargs):
        from audit import services

        if not changed_queryset:
            return None
        kwargs.setdefault("action", AuditEntry.Action.UPDATE)
        return super().log_m2m_changes(
            changed_queryset,
            instance,
            operation,
            field_name,
            **services.model_diff_fields(instance, kwargs),
        )


class AuditEntry(AbstractLogEntry):
    class Action(AbstractLogEntry.Action):
        # Domain events (``record``) are neither a create, update, delete nor a model access.
        EVENT = 4
        choices = (*AbstractLogEntry.Action.choices, (EVENT, "event"))

    # --- fields inherited from django-auditlog, redefined -------------------------------------
    # Foreign keys never cascade and carry no database constraint: deleting a user or a content
    # type must not try to UPDATE or DELETE audit rows (the trigger would refuse, and the trail
    # must outlive what it describes). Names are kept as they were in the *_name columns.
    # db_index=False on the foreign keys: the viewer's composite indexes below lead with them.
    content_type = models.ForeignKey(
        "contenttypes.ContentType",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
        verbose_name="target type",
    )
    object_pk = models.CharField("target id", max_length=255, blank=True, default="")
    object_id = models.BigIntegerField("target id (integer)", null=True, blank=True)
    object_repr = models.TextField("target text", blank=True, default="")
    action = models.PositiveSmallIntegerField(choices=Action.choices, default=Action.EVENT)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_email = models.CharField(max_length=254, blank=True, default="")
    # NULL, not "", when there is no request: as django-auditlog writes it.
    cid = models.CharField("request id", max_length=255, null=True, blank=True)  # noqa: DJ001
    timestamp = models.DateTimeField(default=timezone.now)
    additional_data = models.JSONField("data", null=True, blank=True)

    # --- our own columns ----------------------------------------------------------------------
    event = models.CharField(max_length=100)
    source = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="Where the entry came from: web, api, task:<name>, command:<name>.",
    )
    actor_name = models.CharField(max_length=255, blank=True, default="")
    impersonator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        null=True,
        blank=True,
        related_name="+",
    )
    impersonator_name = models.CharField(max_length=255, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")

    # Set by the GDPR erasure, together with blanking the group's columns.
    identity_erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    subject_erased_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AuditEntryManager()

    class Meta:
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
        ordering = ["-timestamp", "-id"]
        get_latest_by = "timestamp"
        constraints = [
            models.CheckConstraint(
                condition=Q(event__regex=EVENT_PATTERN), name="audit_entry_event_format"
            ),
        ]
        # The viewer lists newest first, keyset-paginated on (timestamp, id), and filters by
        # actor, target, event or impersonation: one index per filter, each ending in the sort
        # key, so the first page of any filter is an index range scan that stops after 51 rows.
        # The free-text index (GIN over a tsvector) is created in migration 0002 with RunSQL,
        # because queries must repeat its expression verbatim (audit.queries.SEARCH_VECTOR_SQL).
        indexes = [
            models.Index(fields=["timestamp", "id"], name="audit_time_idx"),
            models.Index(fields=["actor", "timestamp", "id"], name="audit_actor_time_idx"),
            models.Index(
                fields=["content_type", "object_pk", "timestamp", "id"],
                name="audit_target_time_idx",
            ),
            models.Index(fields=["event", "timestamp", "id"], name="audit_event_time_idx"),
            models.Index(
                fields=["timestamp", "id"],
                condition=Q(impersonator__isnull=False),
                name="audit_impersonated_idx",
            ),
            # What one staff member did while impersonating (the impersonation pages). Partial
            # indexes hold only the few impersonated entries, so they cost writes little.
            models.Index(
                fields=["impersonator", "timestamp"],
                condition=Q(impersonator__isnull=False),
                name="audit_impersonator_time_idx",
            ),
        ]

    def __str__(self) -> str:
        target = f" {self.object_repr}" if self.object_repr else ""
        return f"{self.event}{target} by {self.actor_name or 'unknown'}"

    @property
    def target_label(self) -> str:
        """``app_label.model`` of the target, as the viewer's target filter takes it."""
        from audit.queries import target_type_label

        return target_type_label(self.content_type_id)


class ChainLink(models.Model):
    """One link of the hash chain: entry ``entry_id`` is the ``seq``-th entry, and
    ``hash = sha256(prev_hash || content digest)`` (see audit.chain). Insert-only."""

    seq = models.BigIntegerField(primary_key=True)
    # No database constraint: an entry deleted behind the application's back must leave its
    # link behind, so verification can name it.
    entry = models.OneToOneField(
        AuditEntry, on_delete=models.DO_NOTHING, db_constraint=False, related_name="link"
    )
    prev_hash = models.BinaryField()
    hash = models.BinaryField()
    identity_digest = models.BinaryField()
    subject_digest = models.BinaryField()
    sealed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"seq {self.seq} → entry {self.entry_id}"


class AuditCheckpoint(models.Model):
    """A signed statement "the chain's entry ``seq`` had hash ``hash`` at ``created_at``".

    Daily checkpoints make cutting entries off the end of the chain detectable; a purge
    checkpoint records where the retention purge legitimately cut the start of the chain (and
    which archive holds what was cut). Append-only like the entries.
    """

    class Kind(models.TextChoices):
        DAILY = "daily", "Daily"
        PURGE = "purge", "Retention purge"

    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    seq = models.BigIntegerField()
    hash = models.BinaryField()
    entry_id = models.BigIntegerField(help_text="Id of the entry at this seq, for the report.")
    archive_name = models.CharField(max_length=255, blank=True, default="")
    archive_sha256 = models.CharField(max_length=64, blank=True, default="")
    signature = models.CharField(
        max_length=64, help_text="HMAC-SHA256, hex, keyed with AUDIT_CHECKPOINT_KEY."
    )

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["kind", "seq"], name="audit_checkpoint_kind_seq")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} checkpoint at seq {self.seq}"
