"""Raw points in PostgreSQL: binary COPY into the day-partitioned table, the per-minute rollups
updated in the same transaction, the flush of the Redis stream, and partition maintenance."""

from __future__ import annotations

import json
import math
import operator
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat

from django.conf import settings
from django.db import connection, transaction
from psycopg.types.json import Jsonb

from monitoring.metrics import (
    PG_EPOCH_MICROS,
    Columns,
    Point,
    columns_of,
    decode_columns,
    decode_entry,
    native_columns,
)

POINTS_TABLE = "monitoring_points"
# Two flushers never interleave: the stream cursor is one row, and the lock keeps the second
# out without waiting (it finds nothing left to do after the first anyway).
FLUSH_LOCK_ID = 0x6D6F6E31  # "mon1"
# Stream entries per transaction; an entry holds up to SEND_EVERY_POINTS (500) points, so a
# transaction holds up to 128,000 (about 15 MB in flight). Each transaction costs a WAL flush
# at commit and four rollup statements whatever its size: when the stream has a backlog, bigger
# transactions spend less of the flush on that.
FLUSH_BATCH = 256
HIST_BASE = 1.1
_LOG_BASE = math.log(HIST_BASE)
NONPOSITIVE_BUCKET = "z"


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

    def __init__(
        self,
        values: Sequence[float],
        micros: Sequence[int],
        *,
        epoch: int = 0,
        newest: int | None = None,
    ):
        """The summary of one minute's values (``micros``: their times, in the same order, in
        microseconds since ``epoch``, itself in Unix microseconds; ``newest``: their maximum,
        when known)."""
        self.count = len(values)
        self.sum = math.fsum(values)
        self.min = min(values)
        self.max = max(values)
        at = micros.index(max(micros) if newest is None else newest)  # the first of the newest
        self.last = values[at]
        self.last_at = micros[at] + epoch
        self.hist = _histogram(values, self.min)

    def copy(self) -> _Minute:
        clone = _Minute.__new__(_Minute)
        for slot in _Minute.__slots__:
            setattr(clone, slot, getattr(self, slot))
        clone.hist = dict(self.hist)
        return clone

    def merge(self, other: _Minute) -> None:
        """Fold another summary of the same series in (minutes into their hour)."""
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_at > self.last_at:
            self.last, self.last_at = other.last, other.last_at
        for key, n in other.hist.items():
            self.hist[key] = self.hist.get(key, 0) + n


def _histogram(values: Sequence[float], low: float) -> dict[int, int]:
    """How many of ``values`` fall in each bucket_of bucket (``low``: their minimum). This runs
    once per point of every flush, so the filter and the chain of maps computing
    floor(log(v) / base) run in C, without a Python step per value."""
    positive = values if low > 0 else list(filter((0.0).__lt__, values))
    logs = map(math.log, positive)
    hist = Counter(map(math.floor, map(operator.truediv, logs, repeat(_LOG_BASE))))
    if len(positive) < len(values):
        hist[NONPOSITIVE] = len(values) - len(positive)
    return dict(hist)


def summarize(points: Iterable[Point]) -> dict[tuple[str, str, int], _Minute]:
    groups: dict[tuple[str, str, int], tuple[list[float], list[int]]] = {}
    for name, value, micros, tags_json in points:
        key = (name, tags_json, micros // MINUTE_MICROS)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [])
        group[0].append(value)
        group[1].append(micros)
    return {key: _Minute(values, micros) for key, (values, micros) in groups.items()}


def _micros_to_dt(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


class SeriesBatch:
    """Points to write, by series (metric name and tags JSON), each series' times and values in
    the wire format of the stream's column entries (metrics.columns_of)."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], tuple[list[bytes], list[bytes]]] = {}
        self.points = 0

    def add_columns(self, columns: Iterable[Columns]) -> None:
        for name, tags_json, times, values in columns:
            parts = self._series.get((name, tags_json))
            if parts is None:
                parts = self._series[(name, tags_json)] = ([], [])
            parts[0].append(times)
            parts[1].append(values)
            self.points += len(times) // 8

    def add_points(self, points: Iterable[Point]) -> None:
        self.add_columns(columns_of(points))

    def names(self) -> set[str]:
        return {name for name, _tags in self._series}

    def series(self) -> list[Columns]:
        return [
            (name, tags_json, b"".join(times), b"".join(values))
            for (name, tags_json), (times, values) in self._series.items()
        ]


def write_points(points: Sequence[Point]) -> int:
    """COPY ``points`` into the raw table and fold them into the rollups, in one transaction."""
    batch = SeriesBatch()
    batch.add_points(points)
    return write_batch(batch)


DAY_MICROS = 86_400_000_000
MINUTE_MICROS = 60_000_000
PG_EPOCH = date(2000, 1, 1)


def write_batch(batch: SeriesBatch) -> int:
    """COPY the points of ``batch`` into the raw table and fold them into the rollups, in one
    transaction; returns how many points."""
    if not batch.points:
        return 0
    series = batch.series()
    native = [native_columns(times, values) for _name, _tags, times, values in series]
    bounds = [(min(stamps), max(stamps)) for stamps, _values in native]
    days: set[int] = set()
    for (stamps, _values), (oldest, newest) in zip(native, bounds, strict=True):
        first, last = oldest // DAY_MICROS, newest // DAY_MICROS
        days.update((first, last) if last - first <= 1 else {s // DAY_MICROS for s in stamps})
    with transaction.atomic(), connection.cursor() as wrapper:
        cursor = wrapper.cursor  # the psycopg cursor, for COPY
        _ensure_days(cursor, (PG_EPOCH + timedelta(days=d) for d in days))
        minutes: dict[tuple[str, str, int], _Minute] = {}
        with cursor.copy(COPY_SQL) as copy:
            copy.write(_COPY_SIGNATURE)
            for (name, tags_json, times, values), (stamps, numbers), span in zip(
                series, native, bounds, strict=True
            ):
                copy.write(copy_rows(name, tags_json, times, values))
                # PostgreSQL stores those rows while this process summarizes them.
                _summarize_series(minutes, (name, tags_json), stamps, numbers.tolist(), span)
            copy.write(_COPY_TRAILER)
        merge_rollups(cursor, minutes)
    return batch.points


def _summarize_series(
    minutes: dict[tuple[str, str, int], _Minute],
    series: tuple[str, str],
    stamps: Sequence[int],
    values: list[float],
    span: tuple[int, int],
) -> None:
    """Add the per-minute summaries of one series (``stamps`` in microseconds since 2000-01-01,
    ``span`` their minimum and maximum) to ``minutes``; a flush holds a few seconds of points,
    so a series mostly falls in one minute."""
    name, tags_json = series
    first = (span[0] + PG_EPOCH_MICROS) // MINUTE_MICROS
    if first == (span[1] + PG_EPOCH_MICROS) // MINUTE_MICROS:
        minutes[(name, tags_json, first)] = _Minute(
            values, stamps, epoch=PG_EPOCH_MICROS, newest=span[1]
        )
        return
    groups: dict[int, tuple[list[float], list[int]]] = {}
    for stamp, value in zip(stamps, values, strict=True):
        minute = (stamp + PG_EPOCH_MICROS) // MINUTE_MICROS
        group = groups.get(minute)
        if group is None:
            group = groups[minute] = ([], [])
        group[0].append(value)
        group[1].append(stamp)
    for minute, (group_values, group_stamps) in groups.items():
        minutes[(name, tags_json, minute)] = _Minute(
            group_values, group_stamps, epoch=PG_EPOCH_MICROS
        )


# The rows go out as one binary COPY stream built here, each field in its column's wire format:
# timestamptz is int8 microseconds since 2000-01-01, float8 is IEEE big-endian, jsonb is a
# version byte (1) and the JSON text. The stream's column entries carry times and values in
# those formats already, so a series' rows are one row repeated and the times and values put
# in place by slice assignment: a C loop per byte position, none per point.
COPY_SQL = f"COPY {POINTS_TABLE} (time, name, value, tags) FROM STDIN (FORMAT BINARY)"
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # no flags, no extension
_COPY_TRAILER = struct.pack(">h", -1)
_NULL_FIELD = struct.pack(">i", -1)
_ROW_AND_TIME = struct.Struct(">hiq")  # 4 fields; the time field: length 8, int8
_VALUE = struct.Struct(">id")  # length 8, float8
_TIME_AT = _ROW_AND_TIME.size - 8


def _text_field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def copy_rows(name: str, tags_json: str, times: bytes, values: bytes) -> bytearray:
    """The binary COPY rows of one series (``times`` and ``values`` in their wire formats)."""
    name_field = _text_field(name.encode())
    tags_field = _text_field(b"\x01" + tags_json.encode()) if tags_json else _NULL_FIELD
    row = _ROW_AND_TIME.pack(4, 8, 0) + name_field + _VALUE.pack(8, 0.0) + tags_field
    width = len(row)
    value_at = _ROW_AND_TIME.size + len(name_field) + 4
    rows = bytearray(row * (len(times) // 8))
    for i in range(8):
        rows[_TIME_AT + i :: width] = times[i::8]
        rows[value_at + i :: width] = values[i::8]
    return rows


def merge_rollups(cursor, minutes: dict[tuple[str, str, int], _Minute]) -> None:
    """Add per-minute summaries to the minute rollups and to the hourly ones (which the charts
    of long ranges read: a week is 168 rows per tag set instead of 10,080)."""
    if not minutes:
        return
    hours: dict[tuple[str, str, int], _Minute] = {}
    for (name, tags_key, minute), summary in minutes.items():
        key = (name, tags_key, minute // 60)
        hour = hours.get(key)
        if hour is None:
            hours[key] = summary.copy()
        else:
            hour.merge(summary)
    _merge_into(cursor, MINUTE_ROLLUPS, minutes)
    _merge_into(cursor, HOUR_ROLLUPS, hours)


@dataclass(frozen=True)
class _RollupTable:
    table: str
    column: str  # the bucket's start time
    seconds: int  # the bucket's width


MINUTE_ROLLUPS = _RollupTable("monitoring_rollups", "minute", 60)
HOUR_ROLLUPS = _RollupTable("monitoring_rollups_hourly", "hour", 3600)


def _merge_into(
    cursor, target: _RollupTable, summaries: dict[tuple[str, str, int], _Minute]
) -> None:
    """Read the rows ``summaries`` touch (locked, in key order so concurrent flushes cannot
    deadlock), merge them in, and upsert. Keys are (name, tags key, bucket number)."""
    keys = list(summaries)
    width = target.seconds * 1_000_000
    table, column = target.table, target.column
    cursor.execute(
        f"""SELECT r.name, r.tags_key, r.{column}, r.count, r.sum, r.min, r.max, r.last,
                  r.last_at, r.hist
           FROM {table} r
           JOIN unnest(%s::text[], %s::text[], %s::timestamptz[]) AS k(name, tags_key, {column})
             USING (name, tags_key, {column})
           ORDER BY r.name, r.tags_key, r.{column}
           FOR UPDATE OF r""",  # noqa: S608 - table and column from the constants above
        [[k[0] for k in keys], [k[1] for k in keys], [_micros_to_dt(k[2] * width) for k in keys]],
    )
    for name, tags_key, start, count, total, low, high, last, last_at, hist in cursor.fetchall():
        entry = summaries[(name, tags_key, int(start.timestamp()) // target.seconds)]
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
            _micros_to_dt(key[2] * width),
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
        for key, m in summaries.items()
    ]
    cursor.executemany(
        f"""INSERT INTO {table}
             (name, tags_key, tags, {column}, count, sum, min, max, last, last_at, p95, hist)
           VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (name, tags_key, {column}) DO UPDATE SET
             count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max,
             last = EXCLUDED.last, last_at = EXCLUDED.last_at, p95 = EXCLUDED.p95,
             hist = EXCLUDED.hist""",  # noqa: S608 - table and column from the constants above
        rows,
    )


# --- flushing the Redis stream -------------------------------------------------------------


def flush_stream(
    client,
    key: str,
    *,
    batch: int = FLUSH_BATCH,
    max_batches: int | None = None,
    written: set[str] | None = None,
) -> int:
    """Move the stream's points into PostgreSQL, ``batch`` entries at a time; returns how many
    points. The names of the metrics written are added to ``written`` (alert evaluation).

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
            points = SeriesBatch()
            for _entry_id, fields in entries:
                raw = fields.get(b"p")
                if raw is None:
                    continue
                try:
                    columns = decode_columns(raw)
                    if columns is None:  # an entry in the per-point text format
                        columns = columns_of(decode_entry(raw.decode()))
                except ValueError:
                    continue  # not one of ours; skipped rather than blocking the stream
                points.add_columns(columns)
            write_batch(points)
            if written is not None:
                written.update(points.names())
            new_last = entries[-1][0].decode()
            cursor.execute(
                "UPDATE monitoring_flush_cursor SET last_id = %s WHERE stream = %s", [new_last, key]
            )
            total += points.points
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
    """Delete rollup minutes and hours older than ``before`` (the rollups are kept a year);
    returns how many minutes went."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM monitoring_rollups_hourly WHERE hour < %s", [before])
        cursor.execute("DELETE FROM monitoring_rollups WHERE minute < %s", [before])
        return cursor.rowcount
