"""The hash chain over audit entries: canonical content, sealing, verification, checkpoints.

Canonical content
    An entry's columns, cast to fixed types, form PostgreSQL records (``ROW(...)``) whose
    binary form (``record_send``: column count, then type OID, length and binary value of each
    column) is the canonical byte string that is hashed. It is injective (every value is
    length-prefixed), independent of session settings (time zone, date style), computed in C
    by PostgreSQL, and simple to rebuild in Python from an archive (:func:`record_bytes`).

    The personal columns are not hashed into the content directly: they form two groups,
    *identity* (who: actor name and email, impersonator name, IP, user agent) and *subject*
    (what: target text, changes, data). Each group has its own digest, stored in the link; the
    content digest covers the content columns plus both group digests. A GDPR erasure blanks a
    group's columns and sets its ``*_erased_at``: verification then checks that the group is
    blank and relies on the stored digest, so the chain still verifies; a group that was not
    erased is recomputed from its columns, so any change to it is detected.

        identity_digest = sha256("adminsite-audit/v1/identity|" || record(identity columns))
        subject_digest  = sha256("adminsite-audit/v1/subject|"  || record(subject columns))
        content_digest  = sha256("adminsite-audit/v1/content|"  || record(content columns)
                                 || identity_digest || subject_digest)
        hash            = sha256(prev_hash || content_digest)

Chain
    One ``ChainLink`` per entry, numbered by ``seq`` 1, 2, 3…; ``prev_hash`` of seq 1 is 32 zero
    bytes or, once the retention purge has cut the start of the chain, the hash its purge
    checkpoint recorded. Verification walks the links in ``seq`` order.

Sealing
    Writers insert entries inside their own transaction; nothing else happens there, and no
    business transaction waits for the chain. Each entry carries the id of the transaction that
    wrote it (the ``xid`` column, default ``pg_current_xact_id()``, migration 0007). The sealer
    process (``manage.py audit_sealer``, :func:`run_sealer`) and, every few seconds, Celery beat
    as a backstop run :func:`seal`, which calls the database function ``audit_seal`` (migrations
    0004, 0006 and 0007, the same canonical form as below): it takes a PostgreSQL advisory lock,
    reads the snapshot it last sealed up to (``audit_sealstate``), and links, in id order, the
    entries committed since: those whose transaction was running in that snapshot or started
    after it, that its current snapshot sees and that have no link yet. Then it remembers the
    current snapshot. Only the lock holder seals, so the chain never forks; a sealer that finds
    the lock taken leaves the entries to the holder, which looks again *after* releasing the
    lock (see :func:`seal`), so nothing committed is left behind.

Verification
    Done by PostgreSQL, in seq ranges: per link it recomputes the digests from the entry and
    compares them, and compares each prev_hash with the previous link's hash; only failing rows
    come back to Python, which reports them and checks the checkpoints. Keeping the per-row
    work in one C loop is what makes a full walk run at well over 100,000 entries a second.

Database guard
    The triggers from migration 0002 reject UPDATE and DELETE of entries and links except on
    the sanctioned paths, each announced with a transaction-local setting: ``audit.mode =
    'erase'`` (blanking personal groups of linked entries) and ``'purge'`` (deleting linked
    entries and their links up to ``audit.purge_through``). The setting is a guard against
    mistakes, not a security boundary: whoever can run SQL as the table's owner can also
    disable the triggers. Tampering by such a person is what the chain and the signed
    checkpoints detect.
"""

# ruff: noqa: S608 - SQL here is assembled from this module's constants (table names, column
# expressions); every value goes to the database as a parameter.
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger("audit.chain")

ENTRIES = "audit_auditentry"
LINKS = "audit_chainlink"
GENESIS_HASH = bytes(32)
# pg_try_advisory_xact_lock key of the sealing step ("auditsea" as a big-endian integer).
SEAL_LOCK_KEY = int.from_bytes(b"auditsea", "big") & 0x7FFF_FFFF_FFFF_FFFF
FORMAT_TAG = "adminsite-audit/v1"

# (name, SQL expression over the entry row ``e`` cast to a fixed type, that type). Order,
# expressions and types are part of the format: changing them breaks verification of existing
# entries (bump FORMAT_TAG and keep the old definition for them instead).
CONTENT: tuple[tuple[str, str, str], ...] = (
    ("id", "e.id::int8", "int8"),
    ("timestamp", 'e."timestamp"::timestamptz', "timestamptz"),
    ("event", "e.event::text", "text"),
    ("action", "e.action::int8", "int8"),
    ("source", "e.source::text", "text"),
    ("target_type_id", "e.content_type_id::int8", "int8"),
    ("target_id", "e.object_pk::text", "text"),
    ("target_id_int", "e.object_id::int8", "int8"),
    ("actor_id", "e.actor_id::int8", "int8"),
    ("impersonator_id", "e.impersonator_id::int8", "int8"),
    ("request_id", "e.cid::text", "text"),
    ("remote_port", "e.remote_port::int8", "int8"),
)
IDENTITY: tuple[tuple[str, str, str], ...] = (
    ("actor_name", "e.actor_name::text", "text"),
    ("actor_email", "e.actor_email::text", "text"),
    ("impersonator_name", "e.impersonator_name::text", "text"),
    ("ip", "e.remote_addr::inet", "inet"),
    ("user_agent", "e.user_agent::text", "text"),
)
SUBJECT: tuple[tuple[str, str, str], ...] = (
    ("target_text", "e.object_repr::text", "text"),
    ("changes", "e.changes::jsonb", "jsonb"),
    ("changes_text", "e.changes_text::text", "text"),
    ("data", "e.additional_data::jsonb", "jsonb"),
    ("serialized_data", "e.serialized_data::jsonb", "jsonb"),
)
# What a blanked group looks like (the erase trigger enforces the same).
IDENTITY_BLANK_SQL = (
    "e.actor_name = '' AND e.actor_email = '' AND e.impersonator_name = '' "
    "AND e.remote_addr IS NULL AND e.user_agent = ''"
)
SUBJECT_BLANK_SQL = (
    "e.object_repr = '' AND e.changes IS NULL AND e.changes_text = '' "
    "AND e.additional_data IS NULL AND e.serialized_data IS NULL"
)
IDENTITY_BLANK = ("", "", "", None, "")
SUBJECT_BLANK = ("", None, "", None, None)

_TAGS = {group: f"{FORMAT_TAG}/{group}|" for group in ("identity", "subject", "content")}


def _record_sql(fields: Sequence[tuple[str, str, str]]) -> str:
    return (
        "pg_catalog.record_send(ROW(" + ", ".join(expression for _, expression, _ in fields) + "))"
    )


def _digest_sql(group: str, body: str) -> str:
    # Schema-qualified, so that no function on the search_path can stand in for these.
    return f"pg_catalog.sha256('{_TAGS[group]}'::bytea || {body})"


IDENTITY_DIGEST_SQL = _digest_sql("identity", _record_sql(IDENTITY))
SUBJECT_DIGEST_SQL = _digest_sql("subject", _record_sql(SUBJECT))


def content_digest_sql(identity_digest: str, subject_digest: str) -> str:
    return _digest_sql(
        "content", f"{_record_sql(CONTENT)} || {identity_digest} || {subject_digest}"
    )


# --- the Python twin of the canonical bytes (archives) ----------------------------------------

_OIDS = {"int8": 20, "text": 25, "inet": 869, "timestamptz": 1184, "jsonb": 3802}
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _send(kind: str, value) -> bytes:
    if kind == "int8":
        return struct.pack(">q", value)
    if kind == "text":
        return value.encode()
    if kind == "jsonb":
        return b"\x01" + value.encode()  # jsonb_send: format version 1, then the jsonb text
    if kind == "timestamptz":
        moment = datetime.fromisoformat(value)
        return struct.pack(">q", (moment - _PG_EPOCH) // timedelta(microseconds=1))
    if kind == "inet":
        interface = ipaddress.ip_interface(value)
        family = 2 if interface.version == 4 else 3  # PGSQL_AF_INET, PGSQL_AF_INET6
        packed = interface.ip.packed
        return bytes([family, interface.network.prefixlen, 0, len(packed)]) + packed
    raise ValueError(f"no binary form for type {kind!r}")


def record_bytes(fields: Sequence[tuple[str, str, str]], values: Sequence) -> bytes:
    """``record_send(ROW(values))`` as PostgreSQL builds it, from archive values: integers,
    text, ISO timestamps, IP addresses and jsonb text."""
    parts = [struct.pack(">i", len(fields))]
    for (_, _, kind), value in zip(fields, values, strict=True):
        if value is None:
            parts.append(struct.pack(">Ii", _OIDS[kind], -1))
        else:
            data = _send(kind, value)
            parts.append(struct.pack(">Ii", _OIDS[kind], len(data)) + data)
    return b"".join(parts)


def group_digest(group: str, record: bytes) -> bytes:
    return hashlib.sha256(_TAGS[group].encode() + record).digest()


def content_digest(record: bytes, identity_digest: bytes, subject_digest: bytes) -> bytes:
    return hashlib.sha256(
        _TAGS["content"].encode() + record + identity_digest + subject_digest
    ).digest()


def link_hash(prev_hash: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(prev_hash + digest).digest()


# --- sealing --------------------------------------------------------------------------------


def head() -> tuple[int, bytes]:
    """(seq, hash) of the newest link; after a purge that removed every entry, the purge
    checkpoint's; (0, genesis) for an empty chain."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT seq, hash FROM {LINKS} ORDER BY seq DESC LIMIT 1")
        row = cursor.fetchone()
        if row is None:
            cursor.execute(
                "SELECT seq, hash FROM audit_auditcheckpoint WHERE kind = 'purge' ORDER BY seq DESC LIMIT 1"
            )
            row = cursor.fetchone()
    if row is None:
        return 0, GENESIS_HASH
    return row[0], bytes(row[1])


def _seal_batch(batch_size: int) -> int | None:
    """Link up to ``batch_size`` committed entries; None when another session holds the lock.

    The work is the database function audit_seal (migrations 0004, 0006, 0007), one round trip
    with cached plans, once per round of the sealer. Its digests are this module's canonical
    form.
    """
    # One statement, so outside a transaction it is its own transaction: the lock is held
    # until that statement's commit and no BEGIN/COMMIT round trips are needed. Asynchronous
    # commit is safe and spares the request a second disk flush: a crash can only lose the
    # newest sealing transactions as a whole, in order, with the snapshot each recorded, so
    # their entries are simply sealed again after the restart.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('synchronous_commit', 'off', true), audit_seal(%s)", [batch_size]
        )
        linked = cursor.fetchone()[1]
    return None if linked < 0 else linked


# The committed entries the sealing step has yet to link (entry_id, written_at), in id order:
# the database function audit_unsealed (migration 0007), which audit_seal links from.
PENDING_SQL = "FROM audit_unsealed(NULL) u"


def has_unsealed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM audit_unsealed(1))")
        return cursor.fetchone()[0]


def seal(*, batch_size: int = 5000, max_rounds: int | None = None, recheck: bool = True) -> int:
    """Link every committed unlinked entry into the chain; returns how many were linked.

    When another process holds the lock this returns at once: the holder looks for committed
    entries again after it releases the lock (``recheck``; the sealer loop, which looks again
    after its pause anyway, does not), so an entry committed before this call is sealed by it
    (or by the next round of a sealer). ``max_rounds`` bounds the work of one call.
    """
    total = 0
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        linked = _seal_batch(batch_size)
        if linked is None:
            return total
        total += linked
        if linked == batch_size:
            continue
        # The lock is released now. Anything committed while we held it, which another sealer
        # that found the lock taken left to us, is visible to this check: take another round.
        if not recheck or not has_unsealed():
            return total
    return total


def run_sealer(*, interval: float, should_stop: Callable[[], bool]) -> int:
    """Seal in rounds until ``should_stop()``: the loop of ``manage.py audit_sealer``.

    Writers never seal: sealing after each commit made every request pay for a second
    transaction (and its WAL flush) and made concurrent writers queue on the sealing lock, which
    capped the trail at a few hundred events a second. One process sealing in batches links
    thousands of entries per round instead. Each round links everything committed by its start
    (a backlog in full batches, back to back), then the sealer pauses ``interval`` seconds: under
    load the entries committed during the pause are linked together in the next round, so the
    cost of a round (the lock, the head of the chain, the index probes, the round trips) is
    shared by hundreds of entries instead of paid every few, and the sealer leaves the CPUs to
    the writers. An entry waits at most about ``interval`` plus one round for its link. It
    polls rather than LISTENs because NOTIFY takes a database-wide lock at commit, which would
    serialize every writer's commit; an idle round is one index probe. Returns how many entries
    it linked."""
    total = 0
    while not should_stop():
        try:
            total += seal(recheck=False)
        except DatabaseError:
            # The database restarted or the connection broke: drop it, wait, carry on. Entries
            # wait in the meantime (the snapshot sealed up to stays where it was); nothing is lost.
            logger.exception("audit sealer: sealing failed; retrying in %.1f s", interval)
            connection.close()
        time.sleep(interval)
    return total


# --- checkpoints ----------------------------------------------------------------------------


def checkpoint_message(*, kind: str, seq: int, hash_: bytes, entry_id: int, created_at: datetime,
                       archive_name: str = "", archive_sha256: str = "") -> bytes:  # fmt: skip
    stamp = created_at.astimezone(UTC).isoformat()
    fields = [f"{FORMAT_TAG}/checkpoint", kind, str(seq), hash_.hex(), str(entry_id), stamp,
              archive_name, archive_sha256]  # fmt: skip
    return "|".join(fields).encode()


def sign(message: bytes) -> str:
    key = settings.AUDIT_CHECKPOINT_KEY
    if not key:
        raise RuntimeError("AUDIT_CHECKPOINT_KEY is empty; checkpoints cannot be signed")
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def signature_valid(message: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(message), signature)


# --- verification ---------------------------------------------------------------------------

# Content: the links of one range of entry ids with their entries; PostgreSQL recomputes every
# digest (in parallel workers when it sees fit) and returns only failing links. Ranges go by
# entry id, not by seq, so a range is two index range scans of the same size on both tables.
_VERIFY_CONTENT_SQL = f"""
SELECT seq, entry_id, present, identity_ok, subject_ok, content_ok, erasure_ok
FROM (
    SELECT l.seq, l.entry_id,
           e.id IS NOT NULL AS present,
           coalesce(e.identity_erased_at IS NOT NULL OR {IDENTITY_DIGEST_SQL} = l.identity_digest, false)
               AS identity_ok,
           coalesce(e.subject_erased_at IS NOT NULL OR {SUBJECT_DIGEST_SQL} = l.subject_digest, false)
               AS subject_ok,
           coalesce(pg_catalog.sha256(l.prev_hash || {content_digest_sql("l.identity_digest", "l.subject_digest")})
               = l.hash, false) AS content_ok,
           coalesce((e.identity_erased_at IS NULL OR ({IDENTITY_BLANK_SQL}))
               AND (e.subject_erased_at IS NULL OR ({SUBJECT_BLANK_SQL})), false) AS erasure_ok
    FROM {LINKS} l
    LEFT JOIN {ENTRIES} e ON e.id = l.entry_id AND e.id BETWEEN %(low)s AND %(high)s
    WHERE l.entry_id BETWEEN %(low)s AND %(high)s
) checked
WHERE NOT (present AND identity_ok AND subject_ok AND content_ok AND erasure_ok)
"""

# Links: one range of seqs (plus the link before it), each prev_hash against the hash before
# it; returns breaks, and a range's first link when its predecessor is missing.
_VERIFY_LINKS_SQL = f"""
SELECT seq, entry_id, prev_hash, lag_seq, chained
FROM (
    SELECT seq, entry_id, prev_hash, lag(seq) OVER w AS lag_seq, prev_hash = lag(hash) OVER w AS chained
    FROM {LINKS}
    WHERE seq BETWEEN %(low)s - 1 AND %(high)s
    WINDOW w AS (ORDER BY seq)
) linked
WHERE seq >= %(low)s AND (lag_seq IS NULL OR seq <> lag_seq + 1 OR NOT chained)
ORDER BY seq
"""


@dataclass(frozen=True)
class Problem:
    # altered, deleted, broken_link, gap, start_missing, truncated, checkpoint, unsealed
    kind: str
    message: str
    entry_id: int | None = None
    seq: int | None = None


@dataclass
class Report:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: bytes | None = None
    checkpoints: int = 0
    unsealed: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def rate(self) -> float:
        return self.entries / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        if self.ok:
            span = f" (seq {self.first_seq}–{self.last_seq})" if self.entries else ""
            return (
                f"Audit chain intact: {self.entries} entries verified{span}, "
                f"{self.checkpoints} checkpoint{'s' if self.checkpoints != 1 else ''} valid, in {self.seconds:.1f} s."
            )
        first = self.problems[0]
        more = len(self.problems) - 1
        tail = f" ({more} further problem{'s' if more != 1 else ''} listed below)" if more else ""
        return f"Audit chain BROKEN: {first.message}{tail}"

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "unsealed": self.unsealed,
            "problems": [
                {"kind": p.kind, "entry_id": p.entry_id, "seq": p.seq, "message": p.message}
                for p in self.problems
            ],
        }


MAX_PROBLEMS = 50


def _describe(entry_id: int, seq: int) -> str:
    return f"entry {entry_id} (seq {seq})"


def _checkpoint_problems(checkpoints) -> list[Problem]:
    problems = []
    for cp in checkpoints:
        message = checkpoint_message(
            kind=cp.kind, seq=cp.seq, hash_=bytes(cp.hash), entry_id=cp.entry_id,
            created_at=cp.created_at, archive_name=cp.archive_name, archive_sha256=cp.archive_sha256,
        )  # fmt: skip
        if not signature_valid(message, cp.signature):
            problems.append(Problem(
                "checkpoint",
                f"checkpoint {cp.pk} ({cp.kind}, seq {cp.seq}) has an invalid signature: it was forged "
                "or altered, or AUDIT_CHECKPOINT_KEY changed",
                cp.entry_id, cp.seq,
            ))  # fmt: skip
    return problems


def _start_problem(entry_id: int, seq: int, prev_hash: bytes, purged_through: int,
                   purge_hash: dict[int, bytes]) -> Problem | None:  # fmt: skip
    """Where the chain starts must be seq 1 on the genesis hash, or right after the last purge."""
    if seq == purged_through + 1:
        if prev_hash != purge_hash.get(purged_through, GENESIS_HASH):
            what = (
                f"the hash recorded by the retention purge through seq {purged_through}"
                if purged_through else "the genesis hash"
            )  # fmt: skip
            return Problem(
                "broken_link",
                f"{_describe(entry_id, seq)}, the first entry, does not link to {what}",
                entry_id,
                seq,
            )
        return None
    if seq > purged_through + 1:
        return Problem(
            "start_missing",
            f"entries with seq {purged_through + 1}–{seq - 1} are missing from the start of the chain (first "
            f"present: {_describe(entry_id, seq)}), and no retention purge recorded removing them",
            entry_id, seq,
        )  # fmt: skip
    # seq <= purged_through: a purge is deleting the start of the chain right now (in batches,
    # oldest first); what it has not reached yet is checked against its checkpoint's hash.
    return None


def _link_problem(row, previous_seq: int | None) -> Problem | None:
    seq, entry_id, _prev_hash, lag_seq, chained = row
    where = _describe(entry_id, seq)
    if lag_seq is None or seq != lag_seq + 1:
        gap_from = lag_seq if lag_seq is not None else previous_seq
        if gap_from is None:
            return None  # the start of the chain: checked by _start_problem
        return Problem(
            "gap",
            f"links with seq {gap_from + 1}–{seq - 1} are missing: the chain jumps from seq {gap_from} to {where}",
            entry_id, seq,
        )  # fmt: skip
    if not chained:
        return Problem(
            "broken_link",
            f"{where} does not link to the entry at seq {seq - 1}: its prev_hash differs from that link's hash",
            entry_id, seq,
        )  # fmt: skip
    return None


def _content_problems(row) -> list[Problem]:
    seq, entry_id, present, identity_ok, subject_ok, content_ok, erasure_ok = row
    where = _describe(entry_id, seq)
    if not present:
        return [
            Problem(
                "deleted",
                f"{where} was deleted: its link remains, the entry is gone",
                entry_id,
                seq,
            )
        ]
    problems = []
    altered = []
    if not content_ok:
        altered.append("its event, time, actor, target or request")
    if not identity_ok:
        altered.append("its actor name, email, IP or user agent")
    if not subject_ok:
        altered.append("its target text, changes or data")
    if altered:
        problems.append(Problem(
            "altered",
            f"{where} was altered after it was sealed: {' and '.join(altered)} no longer match the chain",
            entry_id, seq,
        ))  # fmt: skip
    if not erasure_ok:
        problems.append(
            Problem(
                "altered",
                f"{where} is marked as erased, but its personal fields are not blank",
                entry_id,
                seq,
            )
        )
    return problems


VERIFY_RANGE = 100_000
LINK_RANGE = 1_000_000


def verify(*, progress: Callable[[int], None] | None = None, stale_after_seconds: int | None = None,
           range_size: int = VERIFY_RANGE) -> Report:  # fmt: skip
    """Check the whole chain and every checkpoint; return what is wrong, if anything.

    Runs in one REPEATABLE READ, READ ONLY transaction, so entries, links and checkpoints are
    read from one snapshot. ``progress`` gets the number of entries done after each range.
    """
    from audit.models import AuditCheckpoint

    stale_after = (
        settings.AUDIT_MAX_UNSEALED_SECONDS if stale_after_seconds is None else stale_after_seconds
    )
    report = Report()
    problems = report.problems
    started = time.monotonic()
    fresh_transaction = not connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        if fresh_transaction:
            # Inside a caller's transaction (tests) its snapshot rules; otherwise take our own.
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        # Few rows come back from each range, so a parallel plan costs nothing to gather.
        cursor.execute(
            "SELECT set_config('parallel_setup_cost', '100', true), set_config('parallel_tuple_cost', '0', true)"
        )
        checkpoints = list(AuditCheckpoint.objects.order_by("seq", "id"))
        problems.extend(_checkpoint_problems(checkpoints))
        report.checkpoints = len(checkpoints)
        purges = [cp for cp in checkpoints if cp.kind == AuditCheckpoint.Kind.PURGE]
        purged_through = max((cp.seq for cp in purges), default=0)
        purge_hash = {cp.seq: bytes(cp.hash) for cp in purges}

        cursor.execute(
            f"SELECT count(*), min(seq), max(seq), min(entry_id), max(entry_id) FROM {LINKS}"
        )
        links, first_seq, last_seq, first_id, last_id = cursor.fetchone()
        deleted = 0
        checked = 0
        if first_seq is not None:
            # 1. The links, in seq order: contiguous seqs, each linking to the one before.
            low = first_seq
            while low <= last_seq and len(problems) < MAX_PROBLEMS:
                high = min(low + LINK_RANGE - 1, last_seq)
                cursor.execute(_VERIFY_LINKS_SQL, {"low": low, "high": high})
                for row in cursor.fetchall():
                    seq, entry_id, prev_hash = row[0], row[1], bytes(row[2])
                    if seq == first_seq:
                        start = _start_problem(entry_id, seq, prev_hash, purged_through, purge_hash)
                        if start is not None:
                            problems.append(start)
                        continue
                    previous_seq = None
                    if row[3] is None:
                        cursor.execute(f"SELECT max(seq) FROM {LINKS} WHERE seq < %s", [seq])
                        previous_seq = cursor.fetchone()[0]
                    found = _link_problem(row, previous_seq)
                    if found is not None:
                        problems.append(found)
                low = high + 1
            # 2. The entries, by id range: each one still hashes to its link.
            low = first_id
            while low <= last_id and len(problems) < MAX_PROBLEMS:
                high = low + range_size - 1
                cursor.execute(_VERIFY_CONTENT_SQL, {"low": low, "high": high})
                for row in cursor.fetchall():
                    content_problems = _content_problems(row)
                    deleted += sum(1 for problem in content_problems if problem.kind == "deleted")
                    problems.extend(content_problems)
                cursor.execute(
                    f"SELECT count(*) FROM {LINKS} WHERE entry_id BETWEEN %s AND %s", [low, high]
                )
                done = cursor.fetchone()[0]
                checked += done
                if progress is not None:
                    progress(done)
                low = high + 1
            cursor.execute(f"SELECT hash FROM {LINKS} WHERE seq = %s", [last_seq])
            report.head_hash = bytes(cursor.fetchone()[0])
            report.first_seq, report.last_seq = first_seq, last_seq
            report.entries = checked
            # Problems were found range by range; report them in chain order.
            problems.sort(key=lambda problem: (problem.seq is None, problem.seq or 0))

        # Every checkpoint's seq must still carry the hash it recorded.
        cursor.execute(
            f"SELECT seq, hash, entry_id FROM {LINKS} WHERE seq = ANY(%s)",
            [[cp.seq for cp in checkpoints]],
        )
        at_seq = {seq: (bytes(hash_), entry_id) for seq, hash_, entry_id in cursor.fetchall()}
        head_seq = last_seq if last_seq is not None else purged_through
        for cp in checkpoints:
            if cp.seq > head_seq:
                problems.append(Problem(
                    "truncated",
                    f"entries after seq {head_seq} are missing: checkpoint {cp.pk} of "
                    f"{cp.created_at:%Y-%m-%d %H:%M} recorded entry {cp.entry_id} at seq {cp.seq}",
                    cp.entry_id, cp.seq,
                ))  # fmt: skip
            elif cp.seq in at_seq and at_seq[cp.seq][0] != bytes(cp.hash):
                entry_id = at_seq[cp.seq][1]
                problems.append(Problem(
                    "checkpoint",
                    f"{_describe(entry_id, cp.seq)} has another hash than checkpoint {cp.pk} of "
                    f"{cp.created_at:%Y-%m-%d %H:%M} recorded: the chain was rewritten from there back",
                    entry_id, cp.seq,
                ))  # fmt: skip
        complete = len(problems) < MAX_PROBLEMS
        _check_unlinked(report, stale_after, linked=links - deleted if complete else None)
    report.seconds = time.monotonic() - started
    return report


def _check_unlinked(report: Report, stale_after: int, *, linked: int | None) -> None:
    """Entries the chain does not cover: committed ones waiting for their link for longer than
    ``stale_after`` (sealing has stopped), and entries the sealing step will never see (written
    without their transaction id, or with another one)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), min(u.entry_id), count(*) FILTER (WHERE u.written_at < now() - make_interval(secs => %s)) "
            f"{PENDING_SQL}",
            [stale_after],
        )
        pending, oldest, stale = cursor.fetchone()
        report.unsealed = pending
        if stale:
            report.problems.append(Problem(
                "unsealed",
                f"{stale} entr{'y is' if stale == 1 else 'ies are'} still not linked into the chain although "
                f"older than {stale_after} s (oldest: entry {oldest}): the sealing step is not running",
                oldest, None,
            ))  # fmt: skip
        # Cheap counts first; the anti-join that names the entries runs only when they differ.
        if linked is None:  # the walk stopped early; the counts would not mean anything
            return
        cursor.execute(f"SELECT count(*) FROM {ENTRIES}")
        entries = cursor.fetchone()[0]
        if entries > linked + pending:
            cursor.execute(
                f"SELECT e.id FROM {ENTRIES} e WHERE NOT EXISTS (SELECT 1 FROM {LINKS} l WHERE l.entry_id = e.id) "
                f"AND e.id <> ALL (ARRAY(SELECT u.entry_id {PENDING_SQL})) ORDER BY e.id LIMIT 20"
            )
            ids = [row[0] for row in cursor.fetchall()]
            missing = entries - linked - pending
            report.problems.append(Problem(
                "unsealed",
                f"{missing} entr{'y is' if missing == 1 else 'ies are'} neither linked into the chain nor waiting "
                f"to be (first: entry {', '.join(map(str, ids))}): they were written without the id of their "
                "transaction, or with another one, so the sealing step cannot find them",
                ids[0] if ids else None, None,
            ))  # fmt: skip


def check_entry(entry_id: int) -> list[Problem] | None:
    """The integrity of one entry, for its page: None while it waits for its link, otherwise the
    problems (empty when its digests and its link to the previous entry hold)."""
    with connection.cursor() as cursor:
        cursor.execute(_VERIFY_CONTENT_SQL, {"low": entry_id, "high": entry_id})
        content = [problem for row in cursor.fetchall() for problem in _content_problems(row)]
        cursor.execute(
            f"SELECT l.seq, l.prev_hash, p.hash FROM {LINKS} l LEFT JOIN {LINKS} p ON p.seq = l.seq - 1 "
            "WHERE l.entry_id = %s",
            [entry_id],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    seq, prev_hash, before = row
    if before is not None and bytes(before) != bytes(prev_hash):
        content.append(Problem(
            "broken_link", f"{_describe(entry_id, seq)} does not link to the entry at seq {seq - 1}", entry_id, seq
        ))  # fmt: skip
    return content
