"""Recording metric points: ``track_metric(METRICS.API_LATENCY, 150, tags={"route": "x"})``.

A call validates the point and appends it to an in-process batch; the batch goes to a Redis
stream in one pipelined ``XADD`` round trip once it holds ``SEND_EVERY_POINTS`` points or is
``SEND_EVERY_SECONDS`` old (and at exit, and from a small daemon thread for a process that stops
calling); one stream entry carries the whole batch, column by column (``encode_entry``). The
flush task (monitoring/storage.py) COPYs the stream into PostgreSQL. When Redis is down the
batch is written to the database directly; when both are down the points are dropped and
counted in ``dropped``. Nothing here raises into the caller: a metric must never break the
request or task that records it.

Importing this module touches neither Redis nor the database; connections open on first send.
"""

from __future__ import annotations

import atexit
import binascii
import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)


class METRICS:  # noqa: N801 - read like an enum of constants: METRICS.API_LATENCY
    API_LATENCY = "api_latency_ms"
    ERROR_RATE = "error_rate"
    HTTP_5XX = "http_5xx"
    EMAIL_SYNC_DURATION = "email_sync_duration_ms"
    EMAIL_SYNC_FAILURES = "email_sync_failures"
    EMAIL_SYNC_LAG = "email_sync_lag_s"
    CPU = "cpu_percent"
    MEMORY = "memory_percent"
    DISK = "disk_percent"
    ACTIVE_USERS = "active_users"
    REVENUE = "revenue_cents"
    CELERY_QUEUE_DEPTH = "celery_queue_depth"


# name -> (unit, label): the predefined metrics, charted on the dashboard in this order.
PREDEFINED: dict[str, tuple[str, str]] = {
    METRICS.API_LATENCY: ("ms", "API latency"),
    METRICS.ERROR_RATE: ("ratio", "Error rate"),
    METRICS.HTTP_5XX: ("count", "HTTP 5xx responses"),
    METRICS.EMAIL_SYNC_DURATION: ("ms", "Email sync duration"),
    METRICS.EMAIL_SYNC_FAILURES: ("count", "Email sync failures"),
    METRICS.EMAIL_SYNC_LAG: ("s", "Email sync lag"),
    METRICS.CPU: ("%", "CPU"),
    METRICS.MEMORY: ("%", "Memory"),
    METRICS.DISK: ("%", "Disk"),
    METRICS.ACTIVE_USERS: ("users", "Active users"),
    METRICS.REVENUE: ("cents", "Revenue"),
    METRICS.CELERY_QUEUE_DEPTH: ("tasks", "Celery queue depth"),
}

NAME_RE = re.compile(r"[a-z0-9_.]{1,100}")
TAG_KEY_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_TAGS = 16
MAX_TAG_VALUE_LENGTH = 200
# Points may be up to this far ahead of the clock (skew between hosts) ...
MAX_FUTURE_SECONDS = 300
# ... and no older than the raw retention allows (their day's partition must still exist).
MAX_PAST_SECONDS = 13 * 86400

SEND_EVERY_POINTS = 500
SEND_EVERY_SECONDS = 0.25
STREAM_SUFFIX = "monitoring:points"
SEPARATOR = "|"

# name, value, microseconds since the epoch, canonical tags JSON ('' for none)
Point = tuple[str, float, int, str]


class InvalidPointError(ValueError):
    """A point that cannot be stored; ``field`` names the part that is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidPointError(
            "name",
            "must be 1 to 100 characters of lowercase letters, digits, '_' and '.'",
        )
    return name


def validate_value(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPointError("value", "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidPointError("value", "must be a finite number (not NaN or infinite)")
    return number


_TAGS_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# Callers record the same few tag sets over and over: validated encodings, by content.
_TAGS_CACHE: dict[frozenset, str] = {}
_TAGS_CACHE_SIZE = 4096


def encode_tags(tags) -> str:
    """The canonical JSON of a tag map (sorted keys), '' for none; it is also the rollup key."""
    if not tags and (tags is None or tags == {}):
        return ""
    if type(tags) is dict:
        try:
            key = frozenset(tags.items())
        except TypeError:  # an unhashable value: not a string, refused below
            key = None
        if key is not None:
            cached = _TAGS_CACHE.get(key)
            if cached is not None:
                return cached
            encoded = _validate_and_encode_tags(tags)
            if len(_TAGS_CACHE) >= _TAGS_CACHE_SIZE:
                _TAGS_CACHE.clear()
            _TAGS_CACHE[key] = encoded
            return encoded
    return _validate_and_encode_tags(tags)


def _validate_and_encode_tags(tags) -> str:
    if not isinstance(tags, dict):
        raise InvalidPointError("tags", "must be a flat map of strings to strings")
    if len(tags) > MAX_TAGS:
        raise InvalidPointError("tags", f"at most {MAX_TAGS} tags per point")
    for key, val in tags.items():
        if not isinstance(key, str) or not TAG_KEY_RE.fullmatch(key):
            raise InvalidPointError(
                "tags", f"key {str(key)[:70]!r} must be 1 to 64 letters, digits, '_', '.' or '-'"
            )
        if not isinstance(val, str):
            raise InvalidPointError("tags", f"value of {key!r} must be a string")
        if len(val) > MAX_TAG_VALUE_LENGTH:
            raise InvalidPointError(
                "tags", f"value of {key!r} is longer than {MAX_TAG_VALUE_LENGTH} characters"
            )
    return _TAGS_ENCODER.encode(tags)


def validate_time(at, *, now: float | None = None) -> float:
    """Seconds since the epoch of ``at`` (an aware datetime, or None for now)."""
    now = time.time() if now is None else now
    if at is None:
        return now
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidPointError("time", "must be a timezone-aware datetime")
    stamp = at.timestamp()
    if stamp > now + MAX_FUTURE_SECONDS:
        raise InvalidPointError("time", f"is more than {MAX_FUTURE_SECONDS} s in the future")
    if stamp < now - MAX_PAST_SECONDS:
        raise InvalidPointError(
            "time", f"is more than {MAX_PAST_SECONDS // 86400} days in the past"
        )
    return stamp


def encode_point(name: str, value: float, stamp: float, tags_json: str) -> str:
    """``name|value|microseconds|tags``: names hold no '|', tags come last and may. One line of
    the per-point text entries that processes before the column format wrote; the flush still
    reads them."""
    return f"{name}{SEPARATOR}{value!r}{SEPARATOR}{int(stamp * 1_000_000)}{SEPARATOR}{tags_json}"


# A stream entry in the column format is this header line, then one line per series (metric
# name and tag set) of the batch: ``name|times|values|tags``. Times and values are the base64 of
# the series' big-endian int8 microseconds since 2000-01-01 and float8s: PostgreSQL's binary
# wire format for timestamptz and float8, so the flush copies them into COPY rows with a few
# slice operations per series instead of parsing and packing every point. Base64 keeps the
# entry text (readable with redis-cli, decodable as UTF-8); tags come last and may hold '|'.
COLUMNS_HEADER = "@1"
PG_EPOCH_MICROS = 946_684_800_000_000  # 2000-01-01, PostgreSQL's epoch, in Unix microseconds
_SWAP = sys.byteorder == "little"  # the wire format is big-endian


# name, canonical tags JSON, big-endian int8 times since 2000-01-01, big-endian float8 values
Columns = tuple[str, str, bytes, bytes]


def columns_of(points: Iterable[Point]) -> list[Columns]:
    """``points`` by series, in order within each, as wire-format columns."""
    series: dict[tuple[str, str], tuple[array, array]] = {}
    for name, value, micros, tags_json in points:
        columns = series.get((name, tags_json))
        if columns is None:
            columns = series[(name, tags_json)] = (array("q"), array("d"))
        columns[0].append(micros - PG_EPOCH_MICROS)
        columns[1].append(value)
    result: list[Columns] = []
    for (name, tags_json), (times, values) in series.items():
        if _SWAP:
            times.byteswap()
            values.byteswap()
        result.append((name, tags_json, times.tobytes(), values.tobytes()))
    return result


def encode_entry(points: Sequence[Point]) -> str:
    """One stream entry holding ``points``, in the column format."""
    b64 = binascii.b2a_base64
    lines = [COLUMNS_HEADER]
    lines.extend(
        f"{name}{SEPARATOR}{b64(times, newline=False).decode()}"
        f"{SEPARATOR}{b64(values, newline=False).decode()}{SEPARATOR}{tags_json}"
        for name, tags_json, times, values in columns_of(points)
    )
    return "\n".join(lines)


def decode_columns(raw: bytes) -> list[Columns] | None:
    """The series of a column-format entry; None for an entry in the per-point text format.
    Raises ValueError for an entry that is neither."""
    header = COLUMNS_HEADER.encode() + b"\n"
    if not raw.startswith(header):
        return None
    series: list[Columns] = []
    a2b = binascii.a2b_base64
    for line in raw[len(header) :].split(b"\n"):
        name, stamps, numbers, tags_json = line.split(b"|", 3)
        times, values = a2b(stamps), a2b(numbers)
        if not times or len(times) != len(values) or len(times) % 8:
            raise ValueError("a series needs as many times as values, and at least one")
        series.append((name.decode(), tags_json.decode(), times, values))
    return series


def native_columns(times: bytes, values: bytes) -> tuple[array, array]:
    """A series' wire-format columns as native arrays (times still since 2000-01-01)."""
    stamps, numbers = array("q", times), array("d", values)
    if _SWAP:
        stamps.byteswap()
        numbers.byteswap()
    return stamps, numbers


def decode_entry(raw: str) -> list[Point]:
    """The points of one stream entry, in either format."""
    columns = decode_columns(raw.encode())
    if columns is not None:
        points: list[Point] = []
        for name, tags_json, times, values in columns:
            stamps, numbers = native_columns(times, values)
            points.extend(
                (name, value, micros + PG_EPOCH_MICROS, tags_json)
                for micros, value in zip(stamps, numbers, strict=True)
            )
        return points
    points = []
    append = points.append
    for line in raw.split("\n"):
        name, value, micros, tags_json = line.split(SEPARATOR, 3)
        append((name, float(value), int(micros), tags_json))
    return points


def stream_key() -> str:
    from django.conf import settings

    return f"{settings.REDIS_KEY_PREFIX}{STREAM_SUFFIX}"


class MetricBuffer:
    """One process's outgoing points. ``redis_url`` None means settings.REDIS_URL."""

    def __init__(self, *, redis_url: str | None = None, key: str | None = None):
        self._redis_url = redis_url
        self._key = key
        self._client: Any = None  # a redis.Redis once connected (imported lazily)
        self._pending: list[Point] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped: Counter[str] = Counter()
        self.fallback_writes = 0

    # --- recording ------------------------------------------------------------------------

    def track(self, name, value, *, tags=None, at=None) -> bool:
        """Queue one point; False (and counted) when it was invalid. Never raises."""
        try:
            try:
                validate_name(name)
                number = validate_value(value)
                tags_json = encode_tags(tags)
                stamp = validate_time(at)
            except InvalidPointError as exc:
                self.dropped[f"invalid_{exc.field}"] += 1
                return False
            point = (name, number, int(stamp * 1_000_000), tags_json)
            with self._lock:
                if not self._pending:
                    self._oldest = time.monotonic()
                self._pending.append(point)
                due = (
                    len(self._pending) >= SEND_EVERY_POINTS
                    or time.monotonic() - self._oldest >= SEND_EVERY_SECONDS
                )
            if self._thread is None:
                self._start_thread()
            if due:
                self.send()
            return True
        except Exception:  # noqa: BLE001 - a metric must never break its caller
            self.dropped["error"] += 1
            return False

    def _after_fork(self) -> None:
        """In a forked child (Celery prefork, gunicorn): the parent's batch, socket and thread
        are not ours."""
        self._client = None
        self._pending = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._thread = None

    def _start_thread(self) -> None:
        def loop():
            while True:
                time.sleep(SEND_EVERY_SECONDS * 2)
                try:
                    self.send()
                except Exception:  # noqa: BLE001
                    logger.exception("metric buffer send failed")

        self._thread = threading.Thread(target=loop, name="metric-buffer", daemon=True)
        self._thread.start()

    # --- sending --------------------------------------------------------------------------

    def _redis(self):
        if self._client is None:
            import redis
            from django.conf import settings

            self._client = redis.Redis.from_url(
                self._redis_url or settings.REDIS_URL,
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
        return self._client

    @property
    def key(self) -> str:
        return self._key or stream_key()

    def send(self) -> int:
        """Hand the batch to Redis (one pipelined round trip), else to the database."""
        with self._send_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                # One stream entry holds a whole batch: Redis and the flush handle entries, not
                # points.
                pipe = self._redis().pipeline(transaction=False)
                key = self.key
                for start in range(0, len(batch), SEND_EVERY_POINTS):
                    pipe.xadd(key, {"p": encode_entry(batch[start : start + SEND_EVERY_POINTS])})
                pipe.execute()
                return len(batch)
            except Exception:  # noqa: BLE001 - Redis down: try the database
                logger.warning("metrics: Redis unavailable, writing %d points directly", len(batch))
            try:
                from monitoring import storage

                storage.write_points(batch)
                self.fallback_writes += len(batch)
                return len(batch)
            except Exception:  # noqa: BLE001 - both down: count what is lost
                self.dropped["unavailable"] += len(batch)
                logger.exception(
                    "metrics: Redis and database unavailable, %d points dropped", len(batch)
                )
                return 0


_default = MetricBuffer()
os.register_at_fork(after_in_child=_default._after_fork)
dropped = _default.dropped


def default_buffer() -> MetricBuffer:
    return _default


def track_metric(name, value, *, tags=None, at=None) -> bool:
    """Record one point of metric ``name``. Returns whether it was accepted; never raises."""
    return _default.track(name, value, tags=tags, at=at)


def flush_buffer() -> int:
    """Send this process's pending points now (tests, shutdown)."""
    return _default.send()


def _send_at_exit() -> None:
    # At interpreter shutdown there is nobody left to tell about a failure.
    with contextlib.suppress(Exception):
        _default.send()


atexit.register(_send_at_exit)


def utc_from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
