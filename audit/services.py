"""Every write to the audit trail.

``record`` is the API the other modules code against::

    from audit.services import record
    record("ticket.created", target=ticket, changes={"status": [None, "new"]}, data={"via": "api"})

It writes one entry inside the caller's transaction: if the action rolls back, so does its
entry, and if the entry cannot be written the exception propagates and the action fails with
it. There is never an action without its entry. The sealer process links the entry into the
hash chain within a second of the commit (:mod:`audit.chain`).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DEFAULT_DB_ALIAS, connection, models, transaction
from django.utils import timezone
from django.utils.functional import SimpleLazyObject

from adminsite.prepared import Statement
from audit import archive, chain, context
from audit.models import EVENT_PATTERN, AuditCheckpoint, AuditEntry

logger = logging.getLogger("audit")

_EVENT_RE = re.compile(EVENT_PATTERN)
MASK = "********"
# Keys whose values never enter the trail, in changes or data, at any depth: "password",
# "new_password", "api_token", "client_secret"… ("token_prefix" or "api_token_id" stay).
_MASKED_KEY_WORDS = "password|passwd|secret|token|api_key|apikey|authorization|cvc|cvv|card_number"
_SENSITIVE_KEY = re.compile(rf"(^|_)({_MASKED_KEY_WORDS})$")
_MASKED_KEY_WORD = re.compile(_MASKED_KEY_WORDS)
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_TEXT = 1000


class AuditWriteError(ValueError):
    """``record`` was called with something that cannot be recorded; the message says what."""


# --- writing entries ------------------------------------------------------------------------


def record(
    event: str,
    *,
    target: models.Model | None = None,
    changes: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    actor: Any = None,
) -> AuditEntry:
    """Write a domain event. Actor, impersonator, IP, user agent and request id come from
    :mod:`audit.context`; an ``actor`` given here (a user, or ``"system"``) replaces the
    context's, so services taking an explicit ``actor`` pass it on (None keeps the context's).
    ``changes`` is ``{"field": [old, new], …}``.

    Returns the entry, built when first used: callers rarely look at it, and building a
    model instance costs more than everything else here but the insert."""
    values, related = _entry_values(event, target, changes, data, actor)
    entry_id = _INSERT.execute(values).fetchone()[0]
    return cast(AuditEntry, SimpleLazyObject(lambda: _loaded_entry(entry_id, values, related)))


@dataclass(frozen=True)
class Event:
    """One domain event for :func:`record_many`, with :func:`record`'s arguments."""

    event: str
    target: models.Model | None = None
    changes: Mapping[str, Any] | None = None
    data: Mapping[str, Any] | None = None
    actor: Any = None


def record_many(events: Sequence[Event]) -> list[int]:
    """Write several domain events at once, as :func:`record` writes each (same checks, same
    context), in one statement: for a batch job acting on many objects in one transaction.
    Every event is checked before anything is written. Returns the entries' ids, in order."""
    rows = [
        _entry_values(item.event, item.target, item.changes, item.data, item.actor)[0]
        for item in events
    ]
    if not rows:
        return []
    columns = [list(column) for column in zip(*rows, strict=True)]
    return [entry_id for (entry_id,) in _INSERT_MANY.execute(columns).fetchall()]


def _entry_values(event, target, changes, data, actor) -> tuple[tuple, tuple]:
    """What :func:`record` writes for one event: the values of ``_INSERT_COLUMNS`` in order
    (the JSON columns as their text), and the entry's content type, actor and impersonator.

    It runs on every audited request, so it is kept to plain calls on plain values."""
    if event not in _VALID_EVENTS:
        if not isinstance(event, str) or len(event) > 100 or not _EVENT_RE.match(event):
            raise AuditWriteError(
                f"audit event name {event!r} is invalid: use lowercase dotted words such as 'ticket.created'"
            )
        if len(_VALID_EVENTS) < 10_000:  # event names are a fixed vocabulary, but bound it
            _VALID_EVENTS.add(event)
    if target is None:
        content_type = object_id = None
        object_pk = object_repr = ""
    else:
        content_type, object_pk, object_id, object_repr = _target_fields(target)
    changes_json = None if changes is None else _checked_changes(changes)
    data_json = None if data is None else _checked_data(data, "data")
    who = _context_fields(context._UNSET if actor is None else actor)
    actor_user = who["actor"]
    impersonator = who.get("impersonator")
    values = (
        timezone.now(), event, _EVENT_ACTION, who["source"],
        actor_user.pk if actor_user is not None else None, who["actor_name"], who["actor_email"],
        impersonator.pk if impersonator is not None else None, who.get("impersonator_name", ""),
        who["remote_addr"], who["user_agent"], who["cid"],
        content_type.pk if content_type is not None else None, object_pk, object_id, object_repr,
        changes_json, "", data_json,
    )  # fmt: skip
    return values, (content_type, actor_user, impersonator)


_VALID_EVENTS: set[str] = set()
_EVENT_ACTION = int(AuditEntry.Action.EVENT)


def _loaded_entry(entry_id: int, values: tuple, related: tuple) -> AuditEntry:
    """The instance the ORM would load for the entry (Model.from_db, as for every fetched
    row), with the JSON columns as read back from jsonb."""
    row = {"id": entry_id, **dict(zip(_INSERT_NAMES, values, strict=True))}
    for name in ("changes", "additional_data"):
        if row[name] is not None:
            row[name] = json.loads(row[name])
    entry = AuditEntry.from_db(
        DEFAULT_DB_ALIAS, None, [row.get(name) for name in _entry_attnames()]
    )
    for name, value in zip(("content_type", "actor", "impersonator"), related, strict=True):
        if value is not None:
            AuditEntry._meta.get_field(name).set_cached_value(entry, value)
    return entry


@functools.cache
def _entry_attnames() -> tuple[str, ...]:
    return tuple(field.attname for field in AuditEntry._meta.concrete_fields)


# One fixed statement instead of Model.save(): the ORM would build a model and compile a
# 25-column INSERT on every call, which costs more than the insert itself and counts against
# the 1 ms that recording may add to a request. It is prepared once per connection
# (adminsite.prepared), so PostgreSQL parses and plans the INSERT once instead of on every
# event, and its values are sent apart from the SQL instead of quoted into it.
_INSERT_COLUMNS = (
    ("timestamp", "timestamptz"), ("event", "text"), ("action", "smallint"), ("source", "text"),
    ("actor_id", "integer"), ("actor_name", "text"), ("actor_email", "text"), ("impersonator_id", "integer"),
    ("impersonator_name", "text"), ("remote_addr", "inet"), ("user_agent", "text"), ("cid", "text"),
    ("content_type_id", "integer"), ("object_pk", "text"), ("object_id", "bigint"), ("object_repr", "text"),
    ("changes", "jsonb"), ("changes_text", "text"), ("additional_data", "jsonb"),
)  # fmt: skip
_INSERT_NAMES = tuple(column for column, _ in _INSERT_COLUMNS)
_INSERT = Statement(
    "audit_insert_entry",
    f"INSERT INTO audit_auditentry ({', '.join(_INSERT_NAMES)}) "  # noqa: S608
    f"VALUES ({', '.join(f'%({column})s' for column in _INSERT_NAMES)}) RETURNING id",
    _INSERT_COLUMNS,
)
# record_many's: one array per column, unnested into rows (in order, as RETURNING gives them).
_INSERT_MANY = Statement(
    "audit_insert_entries",
    f"INSERT INTO audit_auditentry ({', '.join(_INSERT_NAMES)}) "  # noqa: S608
    f"SELECT * FROM unnest({', '.join(f'%({column})s' for column in _INSERT_NAMES)})"
    " RETURNING id",
    [(column, f"{sql_type}[]") for column, sql_type in _INSERT_COLUMNS],
)


def record_access(*, customer, what: str, data: Mapping[str, Any] | None = None) -> AuditEntry:
    """A read of a customer's personal data (``customer.viewed``): the customer context panel
    beside a ticket, an export of their data. ``what`` names the view, e.g. ``"context_panel"``.
    Call it where the data is shown, in the same request."""
    if not isinstance(customer, get_user_model()) or customer.pk is None:
        raise AuditWriteError(f"record_access needs a saved customer (a user), got {customer!r}")
    if not isinstance(what, str) or not what.strip() or len(what) > 100:
        raise AuditWriteError(
            f"record_access needs 'what' (the view shown, up to 100 characters), got {what!r}"
        )
    return record("customer.viewed", target=customer, data={"what": what.strip(), **(data or {})})


def model_diff_fields(instance: models.Model, fields: dict) -> dict:
    """Complete an entry django-auditlog is about to write for a registered model's change:
    its event name (``auth.user.updated``), the context's actor and request, and masking.
    Called by :class:`audit.models.AuditEntryManager`."""
    action = fields.get("action", AuditEntry.Action.UPDATE)
    verb = {
        AuditEntry.Action.CREATE: "created",
        AuditEntry.Action.UPDATE: "updated",
        AuditEntry.Action.DELETE: "deleted",
        AuditEntry.Action.ACCESS: "accessed",
    }.get(action, "changed")
    completed = {**fields, **_context_fields(context._UNSET)}
    completed.setdefault("event", f"{instance._meta.label_lower}.{verb}")
    completed["changes"] = _mask_tree(fields.get("changes"))
    completed["object_repr"] = _clean_text(fields.get("object_repr") or _safe_str(instance))[
        :MAX_TEXT
    ]
    return completed


def _context_fields(actor_override: Any) -> dict:
    ctx = context.current()
    actor = context.resolve(ctx.actor if actor_override is context._UNSET else actor_override)
    impersonator = context.resolve(ctx.impersonator)
    user_model = get_user_model()
    fields: dict[str, Any] = {
        "remote_addr": ctx.ip,
        "user_agent": _clean_text(ctx.user_agent or "")[:512],
        "cid": ctx.request_id,
        "source": ctx.source[:200],
    }
    if actor == context.SYSTEM:
        fields.update(actor=None, actor_name=context.SYSTEM, actor_email="")
    elif (
        actor is not None
        and getattr(actor, "is_authenticated", False)
        and isinstance(actor, user_model)
    ):
        fields.update(actor=actor, actor_name=display_name(actor), actor_email=actor.email or "")
    elif actor is None or not getattr(actor, "is_authenticated", False):
        fields.update(actor=None, actor_name="anonymous", actor_email="")
    else:
        raise AuditWriteError(f"audit actor must be a user, None or 'system', got {actor!r}")
    if impersonator is not None:
        if not isinstance(impersonator, user_model):
            raise AuditWriteError(
                f"audit impersonator must be a user or None, got {impersonator!r}"
            )
        fields.update(impersonator=impersonator, impersonator_name=display_name(impersonator))
    return fields


def display_name(user) -> str:
    full = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
    username = user.get_username()
    return _clean_text(f"{full} ({username})" if full else username)[:255]


def _target_fields(target: models.Model) -> tuple[ContentType, str, int | None, str]:
    """A target's content type, primary key as text and as a number, and text as it is now."""
    if not isinstance(target, models.Model):
        raise AuditWriteError(
            f"audit target must be a model instance or None, got {type(target).__name__}"
        )
    pk = target.pk
    if pk is None:
        raise AuditWriteError(
            f"audit target {target!r} has no primary key: save it before recording"
        )
    return (
        ContentType.objects.get_for_model(target, for_concrete_model=False),
        str(pk)[:255],
        pk if isinstance(pk, int) else None,
        _clean_text(_safe_str(target))[:MAX_TEXT],
    )


def _safe_str(instance) -> str:
    try:
        return str(instance)
    except Exception:  # a broken __str__ must not lose the entry
        return f"{instance._meta.label} #{instance.pk}"


def _clean_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; keep the rest byte for byte.
    return value.replace("\x00", "\ufffd")


def _json_payload(value: Any, what: str) -> str:
    """``value`` as JSON text (dates, decimals and UUIDs as strings) with secret keys masked:
    the text the jsonb column stores."""
    try:
        text = _JSON_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise AuditWriteError(f"audit {what} cannot be stored as JSON: {exc}") from None
    if len(text) > MAX_PAYLOAD_BYTES // 4 and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise AuditWriteError(
            f"audit {what} is {len(text.encode())} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    # json.dumps writes U+0000 as the escape \u0000, so without that text there is none to
    # replace (a backslash written before "u0000" also contains it: then the walk finds none).
    nul = "\\u0000" in text
    # Every key appears, lowercased, in the lowercased text: if no secret word is in it, no key
    # is secret and the masking walk would change nothing.
    secret = _MASKED_KEY_WORD.search(text.lower()) is not None
    if not (nul or secret):
        return text
    plain = json.loads(text)
    if nul:
        plain = _without_nul(plain)
    if secret:
        plain = _mask_tree(plain)
    return json.dumps(plain, ensure_ascii=False)


# One encoder for every payload (json.dumps with ``cls`` would build one per call).
_JSON_ENCODER = DjangoJSONEncoder(allow_nan=False, ensure_ascii=False)


def _without_nul(value: Any) -> Any:
    # jsonb cannot hold U+0000 either.
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean_text(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _mask_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                _masked(item)
                if isinstance(key, str) and _SENSITIVE_KEY.search(key.lower())
                else _mask_tree(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_mask_tree(item) for item in value]
    return value


def _masked(value: Any) -> Any:
    # A field diff [old, new] keeps its shape, so the viewer still shows that it changed.
    if isinstance(value, list | tuple) and len(value) == 2:
        return [None if value[0] in (None, "") else MASK, None if value[1] in (None, "") else MASK]
    return MASK


def _checked_changes(changes: Mapping[str, Any]) -> str | None:
    """The field changes as JSON text to store; None when there are none."""
    if not isinstance(changes, Mapping):
        raise AuditWriteError(
            f"audit changes must be a mapping of field -> [old, new], got {type(changes).__name__}"
        )
    for name, pair in changes.items():
        if not isinstance(name, str) or not name:
            raise AuditWriteError(
                f"audit changes: field names must be non-empty strings, got {name!r}"
            )
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise AuditWriteError(f"audit changes: {name!r} must be [old, new], got {pair!r}")
    if not changes:
        return None
    return _json_payload({name: list(pair) for name, pair in changes.items()}, "changes")


def _checked_data(data: Mapping[str, Any], what: str) -> str | None:
    """The extra data as JSON text to store; None when there is none."""
    if not isinstance(data, Mapping):
        raise AuditWriteError(f"audit {what} must be a mapping, got {type(data).__name__}")
    return _json_payload(dict(data), what) if data else None


# --- the chain ------------------------------------------------------------------------------


def seal_pending() -> int:
    """Link every committed unlinked entry (the sealer's loop, and its beat backstop)."""
    return chain.seal()


@transaction.atomic
def create_checkpoint(*, kind: str = AuditCheckpoint.Kind.DAILY, archive_name: str = "",
                      archive_sha256: str = "", at: tuple[int, bytes, int] | None = None) -> AuditCheckpoint | None:  # fmt: skip
    """Sign the chain's current head (or ``at`` = (seq, hash, entry id)). A daily checkpoint
    is skipped when the head has not moved since the last one."""
    if at is None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq, hash, entry_id FROM audit_chainlink ORDER BY seq DESC LIMIT 1"
            )
            row = cursor.fetchone()
        if row is None:
            return None
        at = (row[0], bytes(row[1]), row[2])
    seq, hash_, entry_id = at
    last = AuditCheckpoint.objects.filter(kind=kind).order_by("-seq").first()
    if kind == AuditCheckpoint.Kind.DAILY and last is not None and last.seq == seq:
        return None
    created_at = timezone.now()
    message = chain.checkpoint_message(
        kind=kind, seq=seq, hash_=hash_, entry_id=entry_id, created_at=created_at,
        archive_name=archive_name, archive_sha256=archive_sha256,
    )  # fmt: skip
    checkpoint = AuditCheckpoint.objects.create(
        created_at=created_at, kind=kind, seq=seq, hash=hash_, entry_id=entry_id,
        archive_name=archive_name, archive_sha256=archive_sha256, signature=chain.sign(message),
    )  # fmt: skip
    # Also into the log stream, which is shipped off this database: deleting the newest
    # checkpoint row to hide a truncation still leaves its twin there.
    logger.info(
        "audit checkpoint",
        extra={
            "checkpoint": checkpoint.pk,
            "kind": kind,
            "seq": seq,
            "hash": hash_.hex(),
            "signature": checkpoint.signature,
        },  # fmt: skip
    )
    return checkpoint


# --- GDPR erasure ---------------------------------------------------------------------------


def erase_personal_data(*, actor, user) -> dict[str, int]:
    """Blank ``user``'s personal data in the trail without breaking verification: the identity
    group (names, email, IP, user agent) of entries they made or impersonated in, and the
    subject group (target text, changes, data) of entries about them. The digests sealed into
    the chain stay, so the chain still verifies. Unlinked entries are sealed first (their
    digests must exist before their fields go). The erasure itself is recorded, without names.
    """
    if not isinstance(user, get_user_model()) or user.pk is None:
        raise AuditWriteError(f"erase_personal_data needs a saved user, got {user!r}")
    chain.seal()
    user_type = ContentType.objects.get_for_model(get_user_model())
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('audit.mode', 'erase', true)")
        cursor.execute(
            "UPDATE audit_auditentry SET actor_name = '', actor_email = '', impersonator_name = '', "
            "remote_addr = NULL, user_agent = '', identity_erased_at = %s "
            "WHERE (actor_id = %s OR impersonator_id = %s) AND identity_erased_at IS NULL "
            "AND EXISTS (SELECT 1 FROM audit_chainlink l WHERE l.entry_id = audit_auditentry.id)",
            [now, user.pk, user.pk],
        )
        identities = cursor.rowcount
        cursor.execute(
            "UPDATE audit_auditentry SET object_repr = '', changes = NULL, changes_text = '', "
            "additional_data = NULL, serialized_data = NULL, subject_erased_at = %s "
            "WHERE content_type_id = %s AND object_pk = %s AND subject_erased_at IS NULL "
            "AND EXISTS (SELECT 1 FROM audit_chainlink l WHERE l.entry_id = audit_auditentry.id)",
            [now, user_type.pk, str(user.pk)],
        )
        subjects = cursor.rowcount
        cursor.execute("SELECT set_config('audit.mode', '', true)")
        record(
            "audit.personal_data_erased",
            data={"user_id": user.pk, "identity_entries": identities, "subject_entries": subjects},
            actor=actor,
        )
    return {"identity_entries": identities, "subject_entries": subjects}


# --- retention ------------------------------------------------------------------------------


def retention_cutoff(now=None):
    return (now or timezone.now()) - timedelta(days=settings.AUDIT_RETENTION_DAYS)


@dataclass(frozen=True)
class RetentionPlan:
    cutoff: datetime
    count: int
    first_seq: int | None
    last_seq: int | None
    oldest: datetime | None
    newest: datetime | None
    legal_hold: bool

    def describe(self) -> str:
        hold = (
            " A legal hold is in force (AUDIT_LEGAL_HOLD): nothing will be purged."
            if self.legal_hold
            else ""
        )
        if not self.count:
            return f"No audit entries are older than the retention cutoff {self.cutoff:%Y-%m-%d %H:%M} UTC.{hold}"
        return (
            f"{self.count} audit entries (seq {self.first_seq}–{self.last_seq}, from {self.oldest:%Y-%m-%d %H:%M} "
            f"to {self.newest:%Y-%m-%d %H:%M} UTC) are older than the retention cutoff "
            f"{self.cutoff:%Y-%m-%d %H:%M} UTC ({settings.AUDIT_RETENTION_DAYS} days) and would be archived "
            f"to {archive.archive_dir()} and purged.{hold}"
        )


def retention_plan(*, now: datetime | None = None) -> RetentionPlan:
    """What the retention purge would remove: the longest start of the chain (in seq order)
    whose entries are all older than the cutoff. The chain is cut only at its start, so what
    stays still verifies from the purge checkpoint on."""
    cutoff = retention_cutoff(now)
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(seq) FROM audit_chainlink")
        first_seq = cursor.fetchone()[0]
        boundary = None
        if first_seq is not None:
            # Walks the links from the oldest, so it reads about as many rows as will go.
            cursor.execute(
                "SELECT l.seq FROM audit_chainlink l JOIN audit_auditentry e ON e.id = l.entry_id "
                'WHERE e."timestamp" >= %s ORDER BY l.seq LIMIT 1',
                [cutoff],
            )
            row = cursor.fetchone()
            if row is None:
                cursor.execute("SELECT max(seq) FROM audit_chainlink")
                boundary = cursor.fetchone()[0] + 1
            else:
                boundary = row[0]
        last_seq = boundary - 1 if boundary is not None else None
        if first_seq is None or last_seq < first_seq:
            return RetentionPlan(cutoff, 0, None, None, None, None, settings.AUDIT_LEGAL_HOLD)
        cursor.execute(
            'SELECT min(e."timestamp"), max(e."timestamp") FROM audit_chainlink l '
            "JOIN audit_auditentry e ON e.id = l.entry_id WHERE l.seq BETWEEN %s AND %s",
            [first_seq, last_seq],
        )
        oldest, newest = cursor.fetchone()
    return RetentionPlan(
        cutoff,
        last_seq - first_seq + 1,
        first_seq,
        last_seq,
        oldest,
        newest,
        settings.AUDIT_LEGAL_HOLD,
    )


@dataclass(frozen=True)
class PurgeResult:
    plan: RetentionPlan
    purged: int
    archive_path: str = ""


PURGE_BATCH = 10_000


def archive_and_purge(*, actor=context.SYSTEM, now: datetime | None = None,
                      progress: Callable[[int], None] | None = None) -> PurgeResult:  # fmt: skip
    """The retention run: write the expired start of the chain to a verified archive, sign a
    purge checkpoint naming it, then delete those entries through the sanctioned path. Does
    nothing under a legal hold. Safe to re-run after a crash at any point: the archive is
    rewritten, and a purge checkpoint without its deletions is simply completed."""
    chain.seal()
    plan = retention_plan(now=now)
    if plan.legal_hold or not plan.count or plan.first_seq is None or plan.last_seq is None:
        return PurgeResult(plan, 0)
    first_seq, last_seq = plan.first_seq, plan.last_seq
    path, sha256, last_hash = archive.write(first_seq, last_seq, progress=progress)
    check = archive.verify(path)
    if not check.ok:
        path.unlink(missing_ok=True)
        raise archive.ArchiveError(
            f"the archive just written does not verify: {check.problems[0].message}"
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT entry_id, hash FROM audit_chainlink WHERE seq = %s", [last_seq])
        last_id, db_hash = cursor.fetchone()
    if bytes(db_hash) != last_hash:
        raise archive.ArchiveError(
            f"the archive's last hash differs from entry {last_id} in the database"
        )
    create_checkpoint(
        kind=AuditCheckpoint.Kind.PURGE, archive_name=path.name, archive_sha256=sha256,
        at=(last_seq, last_hash, last_id),
    )  # fmt: skip
    purged = 0
    low = first_seq
    while low <= last_seq:
        high = min(low + PURGE_BATCH - 1, last_seq)
        # Oldest first, entries before their links (the entry guard looks at the link).
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('audit.mode', 'purge', true), set_config('audit.purge_through', %s, true)",
                [str(last_seq)],
            )
            cursor.execute(
                "DELETE FROM audit_auditentry WHERE id IN "
                "(SELECT entry_id FROM audit_chainlink WHERE seq BETWEEN %s AND %s)",
                [low, high],
            )
            purged += cursor.rowcount
            cursor.execute("DELETE FROM audit_chainlink WHERE seq BETWEEN %s AND %s", [low, high])
        if progress is not None:
            progress(high - low + 1)
        low = high + 1
    with transaction.atomic():
        record(
            "audit.purged",
            data={
                "entries": purged,
                "first_seq": plan.first_seq,
                "last_seq": plan.last_seq,
                "cutoff": plan.cutoff,
                "archive": path.name,
                "archive_sha256": sha256,
            },  # fmt: skip
            actor=actor,
        )
    return PurgeResult(plan, purged, str(path))
