"""Raw points in PostgreSQL: binary COPY into the day-partitioned table, the per-minute rollups
updated in the same transaction, the flush of the Redis stream, and partition maintenance."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from monitoring.metrics import decode_entry

POINTS_TABLE = "monitoring_points"
# Two flushers never interleave: the stream cursor is one row, and the lock keeps the second
# out without waiting (it finds nothing left to do after the first anyway).
FLUSH_LOCK_ID = 0x6D6F6E31  # "mon1"
# Stream entries per transaction; an entry holds up to SEND_EVERY_POINTS (500) points.
FLUSH_BATCH = 64
HIST_BASE = 1.1
_LOG_BASE = math.log(HIST_BASE)
NONPOSITIVE_BUCKET = "z"

# name, value, microseconds since the epoch, canonical tags JSON ('' for none)
Point = tuple[str, float, int, str]


# --- partitions ----------------------------------------------------------------------------


def partition_name(day: date) -> str:
    return f"{POINTS_TABLE}_p{day:%Y%m%d}"


def raw_retention_days() -> int:
    return settings.METRICS_RAW_RETENTION_DAYS


@dataclass(frozen=True)
class PartitionReport:
    existing: list[date]
    created: list[date]
    dropped: list[date]
    missing: list[date]


def existing_partitions() -> list[date]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT child.relname FROM pg_inherits
               JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
               JOIN pg_class child ON child.oid = pg_inherits.inhrelid
               WHERE parent.relname = %s ORDER BY child.relname""",
            [POINTS_TABLE],
        )
        names = [row[0] for row in cursor.fetchall()]
    prefix = f"{POINTS_TABLE}_p"
    return [
        date(int(n[-8:-4]), int(n[-4:-2]), int(n[-2:]))
        for n in names
        if n.startswith(prefix) and len(n) == len(prefix) + 8 and n[-8:].isdigit()
    ]


def wanted_days(today: date, *, ahead: int = 3) -> list[date]:
    first = today - timedelta(days=raw_retention_days())
    return [first + timedelta(days=i) for i in range((today - first).days + ahead + 1)]


def maintain_partitions(
    *, today: date | None = None, ahead: int = 3, repair: bool = True
) -> PartitionReport:
    """Create the partitions from the retention start to ``ahead`` days ahead, drop older ones."""
    today = today or datetime.now(UTC).date()
    have = set(existing_partitions())
    wanted = wanted_days(today, ahead=ahead)
    oldest = wanted[0]
    missing = [d for d in wanted if d not in have]
    expired = sorted(d for d in have if d < oldest)
    created: list[date] = []
    dropped: list[date] = []
    if repair:
        with transaction.atomic(), connection.cursor() as cursor:
            for day in missing:
                _create_partition(cursor, day)
                created.append(day)
            for day in expired:
                cursor.execute(f'DROP TABLE IF EXISTS "{partition_name(day)}"')
                dropped.append(day)
        _known_days.clear()
    return PartitionReport(existing=sorted(have), created=created, dropped=dropped, missing=missing)


def _create_partition(cursor, day: date) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    cursor.execute(
        f'CREATE TABLE IF NOT EXISTS "{partition_name(day)}" PARTITION OF {POINTS_TABLE} '
        "FOR VALUES FROM (%s) TO (%s)",
        [start, start + timedelta(days=1)],
    )


_known_days: set[date] = set()


def _ensure_days(cursor, days: Iterable[date]) -> None:
    """A point's day must have its partition before COPY; cheap once a day is known."""
    unknown = [d for d in days if d not in _known_days]
    if not unknown:
        return
    for day in unknown:
        cursor.execute("SELECT to_regclass(%s)", [partition_name(day)])
        if cursor.fetchone()[0] is None:
            _create_partition(cursor, day)
        _known_days.add(day)


# --- writing -------------------------------------------------------------------------------


NONPOSITIVE = -(10**6)  # the bucket of zero and negative values, below every other


def bucket_of(value: float) -> int:
    if value <= 0:
        return NONPOSITIVE
    return math.floor(math.log(value) / _LOG_BASE)


def quantile_from_hist(hist: dict[int, int], q: float, low: float, high: float) -> float:
    """The q-quantile of a bucket histogram: the geometric middle of the bucket it falls in,
    clamped to the observed min and max."""
    total = sum(hist.values())
    if total == 0:
        return high
    rank = q * total
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            estimate = min(0.0, high) if key == NONPOSITIVE else HIST_BASE ** (key + 0.5)
            return max(low, min(high, estimate))
    return high


class _Minute:
    __slots__ = ("count", "hist", "last", "last_at", "max", "min", "sum")

    def __init__(self, values: list[float], micros: list[int]):
        """The summary of one minute's values (``micros``: their times, in the same order)."""
        self.count = len(values)
        self.sum = math.fsum(values)
        self.min = min(values)
        self.max = max(values)
        newest = max(range(len(micros)), key=micros.__getitem__)
        self.last = values[newest]
        self.last_at = micros[newest]
        self.hist = dict(Counter(map(bucket_of, values)))


Groups = dict[tuple[str, str, int], tuple[list[float], list[int]]]


def _summaries(groups: Groups) -> dict[tuple[str, str, int], _Minute]:
    return {key: _Minute(values, micros) for key, (values, micros) in groups.items()}


def summarize(points: Iterable[Point]) -> dict[tuple[str, str, int], _Minute]:
    groups: Groups = {}
    for name, value, micros, tags_json in points:
        key = (name, tags_json, micros // 60_000_000)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [])
        group[0].append(value)
        group[1].append(micros)
    return _summaries(groups)


def _micros_to_dt(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def write_points(points: Sequence[Point]) -> int:
    """COPY ``points`` into the raw table and fold them into the rollups, in one transaction."""
    if not points:
        return 0
    with transaction.atomic(), connection.cursor() as wrapper:
        cursor = wrapper.cursor  # the psycopg cursor, for COPY
        days = {micros // 86_400_000_000 for _n, _v, micros, _t in points}
        _ensure_days(cursor, (date(1970, 1, 1) + timedelta(days=d) for d in days))
        merge_rollups(cursor, _summaries(copy_rows(cursor, points)))
    return len(points)


# Binary COPY sends each field in its column type's wire format with no type tag, so values are
# handed over pre-encoded: timestamptz is int8 microseconds since 2000-01-01, and jsonb is a
# version byte (1) followed by the JSON text. This skips building a datetime and a Jsonb
# wrapper per point, the bulk of COPY's client-side cost.
PG_EPOCH_MICROS = 946_684_800_000_000
COPY_TYPES = ["int8", "text", "float8", "bytea"]
COPY_SQL = f"COPY {POINTS_TABLE} (time, name, value, tags) FROM STDIN (FORMAT BINARY)"


def copy_rows(cursor, points: Iterable[Point]) -> Groups:
    """Binary COPY of ``points`` into the raw table (``cursor`` is a psycopg cursor); returns
    their values grouped by metric, tag set and minute, gathered in the same pass."""
    tag_bytes: dict[str, bytes | None] = {"": None}
    groups: Groups = {}
    with cursor.copy(COPY_SQL) as copy:
        copy.set_types(COPY_TYPES)
        write = copy.write_row
        for name, value, micros, tags_json in points:
            encoded = tag_bytes.get(tags_json, b"")
            if encoded == b"":
                encoded = tag_bytes[tags_json] = b"\x01" + tags_json.encode()
            write((micros - PG_EPOCH_MICROS, name, value, encoded))
            key = (name, tags_json, micros // 60_000_000)
            group = groups.get(key)
            if group is None:
                group = groups[key] = ([], [])
            group[0].append(value)
            group[1].append(micros)
    return groups


def merge_rollups(cursor, minutes: dict[tuple[str, str, int], _Minute]) -> None:
    """Add per-minute summaries to the rollups: read the rows they touch (locked), merge, upsert."""
    if not minutes:
        return
    keys = list(minutes)
    names = [k[0] for k in keys]
    tag_keys = [k[1] for k in keys]
    stamps = [_micros_to_dt(k[2] * 60_000_000) for k in keys]
    cursor.execute(
        """SELECT r.name, r.tags_key, r.minute, r.count, r.sum, r.min, r.max, r.last, r.last_at, r.hist
           FROM monitoring_rollups r
           JOIN unnest(%s::text[], %s::text[], %s::timestamptz[]) AS k(name, tags_key, minute)
             USING (name, tags_key, minute)
           ORDER BY r.name, r.tags_key, r.minute
           FOR UPDATE OF r""",
        [names, tag_keys, stamps],
    )
    for name, tags_key, minute, count, total, low, high, last, last_at, hist in cursor.fetchall():
        entry = minutes[(name, tags_key, int(minute.timestamp()) // 60)]
        entry.count += count
        entry.sum += total
        entry.min = min(entry.min, low)
        entry.max = max(entry.max, high)
        old_micros = int(last_at.timestamp() * 1_000_000)
        if old_micros > entry.last_at:
            entry.last, entry.last_at = last, old_micros
        # Django's connection leaves jsonb undecoded.
        for bucket, n in (json.loads(hist) if isinstance(hist, str) else hist).items():
            key = NONPOSITIVE if bucket == NONPOSITIVE_BUCKET else int(bucket)
            entry.hist[key] = entry.hist.get(key, 0) + n
    rows = [
        (
            key[0],
            key[1],
            key[1] or None,
            _micros_to_dt(key[2] * 60_000_000),
            m.count,
            m.sum,
            m.min,
            m.max,
            m.last,
            _micros_to_dt(m.last_at),
            quantile_from_hist(m.hist, 0.95, m.min, m.max),
            Jsonb(
                {(NONPOSITIVE_BUCKET if k == NONPOSITIVE else str(k)): n for k, n in m.hist.items()}
            ),
        )
        for key, m in minutes.items()
    ]
    cursor.executemany(
        """INSERT INTO monitoring_rollups
             (name, tags_key, tags, minute, count, sum, min, max, last, last_at, p95, hist)
           VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (name, tags_key, minute) DO UPDATE SET
             count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
             last = EXCLUDED.last, last_at = EXCLUDED.last_at, p95 = EXCLUDED.p95,
             hist = EXCLUDED.hist""",
        rows,
    )


# --- flushing the Redis stream -------------------------------------------------------------


def flush_stream(
    client, key: str, *, batch: int = FLUSH_BATCH, max_batches: int | None = None
) -> int:
    """Move the stream's points into PostgreSQL, ``batch`` entries at a time; returns how many
    points.

    Exactly once: each batch is read after the cursor stored in the database, and the points and
    the new cursor commit together. A flush killed before its commit leaves the cursor and the
    stream as they were (the next flush writes the batch); one killed after its commit and
    before trimming the stream leaves entries the next flush skips, being at or before the
    cursor, and trims.
    """
    total = 0
    done = 0
    while max_batches is None or done < max_batches:
        done += 1
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [FLUSH_LOCK_ID])
            if not cursor.fetchone()[0]:
                return total
            cursor.execute(
                "INSERT INTO monitoring_flush_cursor (stream, last_id) VALUES (%s, '') "
                "ON CONFLICT (stream) DO NOTHING",
                [key],
            )
            cursor.execute(
                "SELECT last_id FROM monitoring_flush_cursor WHERE stream = %s FOR UPDATE", [key]
            )
            last_id = cursor.fetchone()[0]
            entries = client.xrange(key, min=f"({last_id}" if last_id else "-", count=batch)
            if not entries:
                break
            points = []
            for _entry_id, fields in entries:
                raw = fields.get(b"p")
                if raw is None:
                    continue
                try:
                    points.extend(decode_entry(raw.decode()))
                except ValueError:
                    continue  # not one of ours; skipped rather than blocking the stream
            write_points(points)
            new_last = entries[-1][0].decode()
            cursor.execute(
                "UPDATE monitoring_flush_cursor SET last_id = %s WHERE stream = %s", [new_last, key]
            )
            total += len(points)
        # Committed: the entries up to the cursor are stored and may go (MINID trims those
        # before it; the cursor's own entry is deleted by id).
        pipe = client.pipeline(transaction=False)
        pipe.xtrim(key, minid=new_last, approximate=False)
        pipe.xdel(key, new_last)
        pipe.execute()
        if len(entries) < batch:
            break
    return total


def purge_rollups(*, before: datetime) -> int:
    """Delete rollup minutes older than ``before`` (the rollups are kept a year)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_rollups WHERE minute < %s", [before])
        return cursor.rowcount
