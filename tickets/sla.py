"""The SLA engine: business-time arithmetic, calendars, policy matching and the ticket clocks.

Business time
    A :class:`Schedule` is a business calendar ready for arithmetic: weekly hours in a time
    zone, closed on public holidays of a country (the ``holidays`` package) and on custom
    dates; or around the clock (``zone is None``). Business hours of a local day are turned
    into UTC intervals, so daylight-saving changes are handled by the time zone database:
    09:00–17:00 is eight real hours on every working day, and a due time eight business
    hours after Friday 09:00 is Monday 09:00 local time whatever the clocks did in between.

    ``add(schedule, start, amount)`` is the moment ``amount`` of business time after
    ``start``; ``between(schedule, a, b)`` the business time from ``a`` to ``b``. For a
    positive amount the result always lies inside business hours (an interval's closing
    moment counts as inside), and ``between(s, a, add(s, a, x)) == x``.

Clocks
    Each ticket gets a first-response and a resolution target (tickets.models.SLATarget) from
    the first matching policy. The functions below change them for the services in
    tickets.services, inside their transaction and with the ticket row locked; each returns
    the names of the ticket fields it changed so the service saves them with its own.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Coalesce

from tickets.models import (
    ACTIVE_STATUSES,
    AlertKind,
    BusinessCalendar,
    CustomerProfile,
    CustomerTier,
    Priority,
    SLAPolicy,
    SLATarget,
    Status,
    TargetKind,
    TargetOutcome,
    Ticket,
)

UTC = dt.UTC
MINUTES_PER_DAY = 24 * 60
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# A calendar open less than once in this many days is treated as never open.
MAX_SEARCH_DAYS = 3 * 366
WARNING_SHARE = (4, 5)  # warn when 80% of a target's business time has passed
PAUSED_STATUSES = frozenset({Status.PENDING, Status.ON_HOLD})
ZERO = dt.timedelta(0)


class CalendarError(ValueError):
    """A calendar that cannot answer (no business hours within MAX_SEARCH_DAYS)."""


# --- schedules and arithmetic ----------------------------------------------------------------


@lru_cache(maxsize=1024)
def _public_holidays(country: str, subdivision: str, year: int) -> frozenset[dt.date]:
    return frozenset(
        holidays.country_holidays(country, subdiv=subdivision or None, years=year).keys()
    )


@dataclass(frozen=True)
class Schedule:
    zone: ZoneInfo | None
    # Seven tuples (Monday first) of (start minute, end minute) in local time, end <= 1440.
    weekly: tuple[tuple[tuple[int, int], ...], ...] = ()
    country: str = ""
    subdivision: str = ""
    closed_dates: frozenset[dt.date] = frozenset()

    @property
    def always_open(self) -> bool:
        return self.zone is None

    def is_closed_day(self, day: dt.date) -> bool:
        if day in self.closed_dates:
            return True
        return bool(self.country) and day in _public_holidays(
            self.country, self.subdivision, day.year
        )


AROUND_THE_CLOCK = Schedule(zone=None)


def _local_moment(day: dt.date, minute: int, zone: ZoneInfo) -> dt.datetime:
    if minute >= MINUTES_PER_DAY:
        day, minute = day + dt.timedelta(days=1), 0
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(UTC)


@lru_cache(maxsize=8192)
def intervals(schedule: Schedule, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
    """Business hours of local ``day`` as UTC intervals ``[start, end)``."""
    if schedule.zone is None:
        raise CalendarError("An around-the-clock schedule has no daily intervals.")
    if schedule.is_closed_day(day):
        return ()
    found = []
    for start, end in schedule.weekly[day.weekday()]:
        a = _local_moment(day, start, schedule.zone)
        b = _local_moment(day, end, schedule.zone)
        if b > a:
            found.append((a, b))
    return tuple(found)


def _first_day(schedule: Schedule, moment: dt.datetime) -> dt.date:
    # Local date of ``moment``; one day earlier, so an interval around it is never skipped.
    return moment.astimezone(schedule.zone).date() - dt.timedelta(days=1)


def add(schedule: Schedule, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
    """The moment ``amount`` of business time after ``start``. With ``amount`` zero: the first
    business moment at or after ``start``."""
    if amount < ZERO:
        raise ValueError("amount must not be negative")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if schedule.zone is None:
        return start + amount
    start = start.astimezone(UTC)
    remaining = amount
    day = _first_day(schedule, start)
    for _ in range(MAX_SEARCH_DAYS):
        for a, b in intervals(schedule, day):
            if b < start or (b == start and remaining):
                continue
            a = max(a, start)
            span = b - a
            if remaining <= span:
                return a + remaining
            remaining -= span
        day += dt.timedelta(days=1)
    raise CalendarError(f"The calendar has no business hours within {MAX_SEARCH_DAYS} days.")


def between(schedule: Schedule, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
    """Business time from ``a`` to ``b`` (zero when ``b`` is not after ``a``)."""
    if b <= a:
        return ZERO
    if schedule.zone is None:
        return b - a
    a, b = a.astimezone(UTC), b.astimezone(UTC)
    total = ZERO
    day = _first_day(schedule, a)
    last = b.astimezone(schedule.zone).date()
    while day <= last:
        for x, y in intervals(schedule, day):
            lo, hi = max(x, a), min(y, b)
            if hi > lo:
                total += hi - lo
        day += dt.timedelta(days=1)
    return total


def is_open(schedule: Schedule, moment: dt.datetime) -> bool:
    """Whether ``moment`` is inside business hours (closing moments included)."""
    if schedule.zone is None:
        return True
    day = moment.astimezone(schedule.zone).date()
    return any(
        a <= moment <= b
        for d in (day - dt.timedelta(days=1), day)
        for a, b in intervals(schedule, d)
    )


def next_open(schedule: Schedule, moment: dt.datetime) -> dt.datetime:
    """``moment`` if business hours are on, else when they next begin."""
    if is_open(schedule, moment):
        return moment
    return add(schedule, moment, ZERO)


# --- calendars: parsing, validation, loading --------------------------------------------------

_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


def parse_day_hours(text: str, *, day: str = "") -> list[list[int]]:
    """``"09:00-12:00, 13:00-17:00"`` → ``[[540, 720], [780, 1020]]``; empty → closed.
    ``24:00`` ends a day. Ranges must be increasing and must not overlap."""
    label = f"{day}: " if day else ""
    ranges: list[list[int]] = []
    for part in (p for p in re.split(r"[,;]", text or "") if p.strip()):
        match = _RANGE.match(part)
        if not match:
            raise ValidationError(
                f"{label}{part.strip()!r} is not a time range; write it like 09:00-17:00."
            )
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if m1 > 59 or m2 > 59 or start >= MINUTES_PER_DAY or end > MINUTES_PER_DAY:
            raise ValidationError(f"{label}{part.strip()!r} is not a time of day (00:00–24:00).")
        if end <= start:
            raise ValidationError(f"{label}{part.strip()!r} ends before it starts.")
        if ranges and start < ranges[-1][1]:
            raise ValidationError(
                f"{label}ranges must be in order and must not overlap ({part.strip()!r})."
            )
        ranges.append([start, end])
    return ranges


def format_day_hours(ranges: Iterable[Iterable[int]]) -> str:
    return ", ".join(
        f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
        for start, end in ranges
    )


def check_time_zone(name: str) -> str:
    name = (name or "").strip()
    if name not in _time_zones():
        raise ValidationError({"time_zone": f"Unknown time zone {name!r}; use e.g. Europe/Berlin."})
    return name


@lru_cache(maxsize=1)
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def check_country(code: str, subdivision: str = "") -> tuple[str, str]:
    code = (code or "").strip().upper()
    subdivision = (subdivision or "").strip().upper()
    if not code:
        if subdivision:
            raise ValidationError({"holiday_subdivision": "A subdivision needs a country."})
        return "", ""
    supported = holidays.list_supported_countries()
    if code not in supported:
        raise ValidationError(
            {"holiday_country": f"No public holidays known for {code!r}; use an ISO code like DE."}
        )
    if subdivision and subdivision not in supported[code]:
        raise ValidationError(
            {
                "holiday_subdivision": f"{subdivision!r} is not a subdivision of {code}; "
                f"known: {', '.join(supported[code][:20]) or 'none'}."
            }
        )
    return code, subdivision


def check_weekly_hours(weekly) -> list[list[list[int]]]:
    """Validate stored weekly hours (seven lists of [start, end] minute pairs)."""
    if not isinstance(weekly, list) or len(weekly) != 7:
        raise ValidationError({"weekly_hours": "Give hours for each of the seven weekdays."})
    for name, ranges in zip(WEEKDAYS, weekly, strict=True):
        parse_day_hours(format_day_hours(ranges), day=name)
    return weekly


# Loaded schedules, by calendar id and version (updated_at changes with every edit, holidays
# included), so the scan and the services do not reread holidays for every ticket.
_SCHEDULES: dict[tuple[int, dt.datetime], Schedule] = {}


def schedule_for(calendar: BusinessCalendar | None) -> Schedule:
    if calendar is None or calendar.always_open:
        return AROUND_THE_CLOCK
    key = (calendar.pk, calendar.updated_at)
    schedule = _SCHEDULES.get(key)
    if schedule is None:
        try:
            zone = ZoneInfo(calendar.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        closed = frozenset(calendar.custom_holidays.values_list("date", flat=True))
        weekly = tuple(
            tuple((int(a), int(b)) for a, b in day) for day in (calendar.weekly_hours or [[]] * 7)
        )
        schedule = Schedule(
            zone=zone,
            weekly=weekly,
            country=calendar.holiday_country,
            subdivision=calendar.holiday_subdivision,
            closed_dates=closed,
        )
        if len(_SCHEDULES) > 256:
            _SCHEDULES.clear()
        _SCHEDULES[key] = schedule
    return schedule


def schedule_of_policy(policy: SLAPolicy | None) -> Schedule:
    return schedule_for(policy.calendar if policy is not None else None)


# --- policies ---------------------------------------------------------------------------------


def tier_of(user_id: int) -> str:
    tier = CustomerProfile.objects.filter(user_id=user_id).values_list("tier", flat=True).first()
    return tier or CustomerTier.STANDARD


def active_policies() -> list[SLAPolicy]:
    return list(
        SLAPolicy.objects.filter(is_active=True)
        .select_related("calendar")
        .order_by("position", "id")
    )


def match_policy(
    policies: Iterable[SLAPolicy], *, priority: str, category_id: int, tier: str
) -> SLAPolicy | None:
    """The first policy (in order) for this priority whose category and tier, when set,
    are the ticket's."""
    for policy in policies:
        if policy.priority != priority:
            continue
        if policy.category_id is not None and policy.category_id != category_id:
            continue
        if policy.customer_tier and policy.customer_tier != tier:
            continue
        return policy
    return None


def policy_for_ticket(ticket: Ticket) -> SLAPolicy | None:
    return match_policy(
        active_policies(),
        priority=ticket.priority,
        category_id=ticket.category_id,
        tier=tier_of(ticket.requester_id),
    )


# --- the clocks -------------------------------------------------------------------------------


def _seconds(delta: dt.timedelta) -> int:
    return int(delta.total_seconds())


def _compute(target: SLATarget, schedule: Schedule) -> None:
    paused = dt.timedelta(seconds=target.paused_seconds)
    full = dt.timedelta(seconds=target.target_seconds)
    warn = dt.timedelta(seconds=target.target_seconds * WARNING_SHARE[0] // WARNING_SHARE[1])
    target.due_at = add(schedule, target.started_at, full + paused)
    target.warn_at = add(schedule, target.started_at, warn + paused)


def _new_target(
    ticket: Ticket, *, kind: str, cycle: int, policy: SLAPolicy, started_at, schedule
) -> SLATarget:
    minutes = (
        policy.first_response_minutes
        if kind == TargetKind.FIRST_RESPONSE
        else policy.resolution_minutes
    )
    target = SLATarget(
        ticket=ticket,
        kind=kind,
        cycle=cycle,
        policy=policy,
        policy_name=policy.name,
        priority=ticket.priority,
        category_id=ticket.category_id,
        assignee_id=ticket.assignee_id,
        target_seconds=minutes * 60,
        started_at=started_at,
    )
    _compute(target, schedule)
    return target


@dataclass
class Plan:
    """The SLA of a ticket about to be created: its policy and first targets."""

    policy: SLAPolicy | None
    first_response_due_at: dt.datetime | None = None
    first_response_warn_at: dt.datetime | None = None
    resolution_due_at: dt.datetime | None = None
    resolution_warn_at: dt.datetime | None = None

    def ticket_fields(self) -> dict:
        return {
            "sla_policy": self.policy,
            "first_response_due_at": self.first_response_due_at,
            "first_response_warn_at": self.first_response_warn_at,
            "resolution_due_at": self.resolution_due_at,
            "resolution_warn_at": self.resolution_warn_at,
        }


def plan_new_ticket(*, priority: str, category_id: int, requester_id: int, created_at) -> Plan:
    """Due times of a new ticket, computed before its INSERT so it is written once."""
    policy = match_policy(
        active_policies(), priority=priority, category_id=category_id, tier=tier_of(requester_id)
    )
    if policy is None:
        return Plan(policy=None)
    schedule = schedule_of_policy(policy)
    first = dt.timedelta(minutes=policy.first_response_minutes)
    resolution = dt.timedelta(minutes=policy.resolution_minutes)
    return Plan(
        policy=policy,
        first_response_due_at=add(schedule, created_at, first),
        first_response_warn_at=add(schedule, created_at, first * 4 / 5),
        resolution_due_at=add(schedule, created_at, resolution),
        resolution_warn_at=add(schedule, created_at, resolution * 4 / 5),
    )


def start_new_ticket(ticket: Ticket, plan: Plan) -> list[SLATarget]:
    """The first targets of a ticket created with ``plan``'s due times."""
    if plan.policy is None:
        return []
    schedule = schedule_of_policy(plan.policy)
    targets = [
        _new_target(
            ticket,
            kind=kind,
            cycle=1,
            policy=plan.policy,
            started_at=ticket.created_at,
            schedule=schedule,
        )
        for kind in (TargetKind.FIRST_RESPONSE, TargetKind.RESOLUTION)
    ]
    return SLATarget.objects.bulk_create(targets)


def _targets(ticket: Ticket) -> list[SLATarget]:
    """All of the ticket's targets, oldest first (a handful of rows)."""
    return list(SLATarget.objects.filter(ticket_id=ticket.pk).order_by("kind", "cycle"))


def _current(targets: list[SLATarget], kind: str) -> SLATarget | None:
    of_kind = [t for t in targets if t.kind == kind]
    return of_kind[-1] if of_kind else None


def _sync(ticket: Ticket, targets: list[SLATarget], kinds=tuple(TargetKind.values)) -> list[str]:
    """Copy the current targets' due times and marks (of ``kinds``) onto the ticket's own
    columns."""
    changed: list[str] = []

    def put(field: str, value) -> None:
        if getattr(ticket, field) != value:
            setattr(ticket, field, value)
            changed.append(field)

    for kind, prefix in (
        (TargetKind.FIRST_RESPONSE, "first_response"),
        (TargetKind.RESOLUTION, "resolution"),
    ):
        target = _current(targets, kind)
        if target is None or kind not in kinds:
            continue
        put(f"{prefix}_due_at", target.due_at)
        put(f"{prefix}_warn_at", target.warn_at)
        breached = target.breached_at is not None or target.outcome == TargetOutcome.BREACHED
        put(f"sla_{prefix}_breached", breached)
        put(f"sla_{prefix}_warning", target.warned_at is not None)
    put("sla_breached", ticket.sla_first_response_breached or ticket.sla_resolution_breached)
    return changed


def _save(targets: Iterable[SLATarget], fields: list[str]) -> None:
    targets = list(targets)
    if targets:
        SLATarget.objects.bulk_update(targets, fields)


def _complete(target: SLATarget, ticket: Ticket, schedule: Schedule, now) -> None:
    target.completed_at = now
    target.assignee_id = ticket.assignee_id
    target.priority = ticket.priority
    target.category_id = ticket.category_id
    if now <= target.due_at:
        target.outcome = TargetOutcome.MET
        target.margin_seconds = _seconds(between(schedule, now, target.due_at))
    else:
        target.outcome = TargetOutcome.BREACHED
        target.margin_seconds = -_seconds(between(schedule, target.due_at, now))
        target.breached_at = target.breached_at or now


_COMPLETE_FIELDS = [
    "completed_at",
    "assignee",
    "priority",
    "category",
    "outcome",
    "margin_seconds",
    "breached_at",
]


def _resume(ticket: Ticket, targets: list[SLATarget], schedule: Schedule, now) -> list[str]:
    """End a pause: the business time it lasted is added to every running clock that has
    not breached (a breach already happened is history)."""
    if ticket.sla_paused_at is None:
        return []
    paused = _seconds(between(schedule, ticket.sla_paused_at, now))
    ticket.sla_paused_at = None
    ticket.sla_paused_seconds += paused
    moved = []
    for target in targets:
        if target.outcome == TargetOutcome.RUNNING and target.breached_at is None and paused:
            target.paused_seconds += paused
            _compute(target, schedule)
            moved.append(target)
    _save(moved, ["paused_seconds", "due_at", "warn_at"])
    return ["sla_paused_at", "sla_paused_seconds"]


def on_status_change(ticket: Ticket, *, previous: str, status: str, now) -> list[str]:
    """Pause, resume, stop or restart the clocks for a status change (a change between two
    running states, like new → open, touches nothing)."""
    pausing = status in PAUSED_STATUSES and previous not in PAUSED_STATUSES
    resuming = previous in PAUSED_STATUSES and status not in PAUSED_STATUSES
    reopening = status in ACTIVE_STATUSES and previous not in ACTIVE_STATUSES
    finishing = status not in ACTIVE_STATUSES and previous in ACTIVE_STATUSES
    fields: list[str] = []
    if not (resuming or reopening or finishing):
        if pausing and ticket.sla_paused_at is None:
            ticket.sla_paused_at = now
            fields.append("sla_paused_at")
        return fields
    schedule = schedule_of_policy(ticket.sla_policy)
    targets = _targets(ticket)
    if resuming:
        fields += _resume(ticket, targets, schedule, now)
    if reopening:
        fields += _restart_resolution(ticket, targets, now)
    elif finishing:
        running = [t for t in targets if t.outcome == TargetOutcome.RUNNING]
        for target in running:
            _complete(target, ticket, schedule, now)
        _save(running, _COMPLETE_FIELDS)
    if pausing:
        ticket.sla_paused_at = now
        fields.append("sla_paused_at")
    if not targets:
        return [*dict.fromkeys(fields)]
    kinds = tuple(TargetKind.values)
    if reopening:
        # Only the new resolution cycle, if a policy gave one (_restart_resolution settled
        # the rest).
        resolution = _current(targets, TargetKind.RESOLUTION)
        resolution_running = resolution is not None and resolution.outcome == TargetOutcome.RUNNING
        kinds = (TargetKind.RESOLUTION,) if resolution_running else ()
    return [*dict.fromkeys(fields + _sync(ticket, targets, kinds=kinds))]


def _clear(ticket: Ticket, prefix: str) -> list[str]:
    """A clock that no longer runs and has no successor: its due time leaves the ticket's
    columns (its target keeps it), so the scan and "next due" stop counting it."""
    names = [f"{prefix}_due_at", f"{prefix}_warn_at"]
    for name in names:
        setattr(ticket, name, None)
    setattr(ticket, f"sla_{prefix}_breached", False)
    setattr(ticket, f"sla_{prefix}_warning", False)
    ticket.sla_breached = ticket.sla_first_response_breached or ticket.sla_resolution_breached
    return [*names, f"sla_{prefix}_breached", f"sla_{prefix}_warning", "sla_breached"]


def _restart_resolution(ticket: Ticket, targets: list[SLATarget], now) -> list[str]:
    """Reopened: a new resolution cycle starts now under the policy that matches today. A
    first response still owed when the ticket was closed without one is not asked again
    (its clock ended with the ticket, and its result is on record)."""
    policy = policy_for_ticket(ticket)
    fields = []
    if policy != ticket.sla_policy:
        ticket.sla_policy = policy
        fields.append("sla_policy")
    first = _current(targets, TargetKind.FIRST_RESPONSE)
    if ticket.first_responded_at is None and first is not None:
        if first.outcome == TargetOutcome.BREACHED:
            # The missed first response stays a breach of this ticket; only its due time
            # leaves the running columns.
            ticket.first_response_due_at = ticket.first_response_warn_at = None
            fields += ["first_response_due_at", "first_response_warn_at"]
        else:
            fields += _clear(ticket, "first_response")
    if policy is None:
        return fields + _clear(ticket, "resolution")
    previous = _current(targets, TargetKind.RESOLUTION)
    cycle = previous.cycle + 1 if previous else 1
    target = _new_target(
        ticket,
        kind=TargetKind.RESOLUTION,
        cycle=cycle,
        policy=policy,
        started_at=now,
        schedule=schedule_of_policy(policy),
    )
    target.save()
    targets.append(target)
    return fields


def on_first_response(ticket: Ticket, *, now) -> list[str]:
    """The first public staff reply: the running first-response clock stops, met or
    breached by the business time between ``now`` and its due time (kept on the ticket)."""
    due = ticket.first_response_due_at
    if due is None:
        return []
    schedule = schedule_of_policy(ticket.sla_policy)
    met = now <= due
    margin = (
        _seconds(between(schedule, now, due)) if met else -_seconds(between(schedule, due, now))
    )
    stopped = SLATarget.objects.filter(
        ticket_id=ticket.pk, kind=TargetKind.FIRST_RESPONSE, outcome=TargetOutcome.RUNNING
    ).update(
        completed_at=now,
        outcome=TargetOutcome.MET if met else TargetOutcome.BREACHED,
        margin_seconds=margin,
        assignee_id=ticket.assignee_id,
        priority=ticket.priority,
        category_id=ticket.category_id,
        breached_at=F("breached_at") if met else Coalesce(F("breached_at"), Value(now)),
    )
    if not stopped or met or ticket.sla_first_response_breached:
        return []
    ticket.sla_first_response_breached = ticket.sla_breached = True
    return ["sla_first_response_breached", "sla_breached"]


def on_retarget(ticket: Ticket, *, now) -> list[str]:
    """Priority or category changed: the policy that matches now sets the running clocks'
    targets (from when each started, paused time still added back). A clock whose new due
    time is ahead of now is no longer breached."""
    policy = policy_for_ticket(ticket)
    fields = []
    if policy != ticket.sla_policy:
        ticket.sla_policy = policy
        fields.append("sla_policy")
    targets = _targets(ticket)
    running = [t for t in targets if t.outcome == TargetOutcome.RUNNING]
    if policy is None:
        for target in running:
            target.outcome = TargetOutcome.CANCELLED
            target.completed_at = now
        _save(running, ["outcome", "completed_at"])
        for field in ("first_response_due_at", "first_response_warn_at"):
            setattr(ticket, field, None)
        for field in ("resolution_due_at", "resolution_warn_at"):
            setattr(ticket, field, None)
        ticket.sla_first_response_breached = ticket.sla_resolution_breached = False
        ticket.sla_first_response_warning = ticket.sla_resolution_warning = False
        ticket.sla_breached = False
        return [
            *fields,
            "first_response_due_at",
            "first_response_warn_at",
            "resolution_due_at",
            "resolution_warn_at",
            "sla_first_response_breached",
            "sla_resolution_breached",
            "sla_first_response_warning",
            "sla_resolution_warning",
            "sla_breached",
        ]
    schedule = schedule_of_policy(policy)
    if not targets and ticket.is_active:
        # The ticket had no policy until now: its clocks start from when it was opened.
        for kind in (TargetKind.FIRST_RESPONSE, TargetKind.RESOLUTION):
            if kind == TargetKind.FIRST_RESPONSE and ticket.first_responded_at is not None:
                continue
            target = _new_target(
                ticket,
                kind=kind,
                cycle=1,
                policy=policy,
                started_at=ticket.created_at,
                schedule=schedule,
            )
            target.save()
            targets.append(target)
        return [*dict.fromkeys(fields + _sync(ticket, targets))]
    for target in running:
        minutes = (
            policy.first_response_minutes
            if target.kind == TargetKind.FIRST_RESPONSE
            else policy.resolution_minutes
        )
        target.policy, target.policy_name = policy, policy.name
        target.priority, target.category_id = ticket.priority, ticket.category_id
        target.target_seconds = minutes * 60
        _compute(target, schedule)
        if target.due_at > now:
            target.breached_at = None
        if target.warn_at > now:
            target.warned_at = None
    _save(
        running,
        [
            "policy",
            "policy_name",
            "priority",
            "category",
            "target_seconds",
            "due_at",
            "warn_at",
            "breached_at",
            "warned_at",
        ],
    )
    return [*dict.fromkeys(fields + _sync(ticket, targets))]


def on_merged(ticket: Ticket, *, now) -> list[str]:
    """A duplicate merged away: its clocks stop without a result (the target ticket's
    clocks carry on)."""
    running = list(SLATarget.objects.filter(ticket_id=ticket.pk, outcome=TargetOutcome.RUNNING))
    for target in running:
        target.outcome = TargetOutcome.CANCELLED
        target.completed_at = now
    _save(running, ["outcome", "completed_at"])
    if ticket.sla_paused_at is not None:
        ticket.sla_paused_at = None
        return ["sla_paused_at"]
    return []


# --- the scan ---------------------------------------------------------------------------------

_ACTIVE_SQL = "(" + ", ".join(f"'{s}'" for s in ACTIVE_STATUSES) + ")"
_PAUSED_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(PAUSED_STATUSES)) + ")"

# One statement per mark: the ticket rows whose clock passed the mark get their flag (the
# queue's counters follow through their trigger), the running target gets the time, and an
# alert row is added, once per target and kind (ON CONFLICT). Warnings are announced only
# while the deadline is still ahead. Paused tickets are skipped: their clock stands still.
# The targets are reached through ``= ANY(ARRAY(...))`` so they are read by their ticket
# index whatever the planner guesses for the number of tickets hit (a hash join over every
# target otherwise).
_MARKS = [
    (
        AlertKind.BREACH,
        TargetKind.FIRST_RESPONSE,
        "sla_first_response_breached = true, sla_breached = true",
        "first_responded_at IS NULL AND NOT sla_first_response_breached "
        "AND first_response_due_at <= %(now)s",
        "breached_at",
        "true",
    ),
    (
        AlertKind.BREACH,
        TargetKind.RESOLUTION,
        "sla_resolution_breached = true, sla_breached = true",
        "NOT sla_resolution_breached AND resolution_due_at <= %(now)s",
        "breached_at",
        "true",
    ),
    (
        AlertKind.WARNING,
        TargetKind.FIRST_RESPONSE,
        "sla_first_response_warning = true",
        "first_responded_at IS NULL AND NOT sla_first_response_warning "
        "AND first_response_warn_at <= %(now)s",
        "warned_at",
        "t.first_response_due_at > %(now)s",
    ),
    (
        AlertKind.WARNING,
        TargetKind.RESOLUTION,
        "sla_resolution_warning = true",
        "NOT sla_resolution_warning AND resolution_warn_at <= %(now)s",
        "warned_at",
        "t.resolution_due_at > %(now)s",
    ),
]


def mark_statement(alert: str, kind: str, assign: str, condition: str, column: str, announce: str):
    # Built from this module's constants only; ``now`` is a bound parameter.
    return f"""
WITH hit AS (
    UPDATE tickets_ticket t SET {assign}
     WHERE t.status IN {_ACTIVE_SQL} AND t.status NOT IN {_PAUSED_SQL}
       AND t.sla_paused_at IS NULL AND {condition}
    RETURNING t.id, t.first_response_due_at, t.resolution_due_at
), marked AS (
    UPDATE tickets_slatarget s SET {column} = %(now)s
      FROM hit t
     WHERE s.ticket_id = ANY(ARRAY(SELECT id FROM hit)) AND s.ticket_id = t.id
       AND s.kind = '{kind}' AND s.outcome = 'running'
    RETURNING s.id, s.ticket_id, {announce} AS announce
), alerts AS (
    INSERT INTO tickets_slaalert (ticket_id, target_id, kind, created_at)
    SELECT ticket_id, id, '{alert}', %(now)s FROM marked WHERE announce
    ON CONFLICT (target_id, kind) DO NOTHING
    RETURNING id
)
SELECT (SELECT count(*) FROM hit), (SELECT count(*) FROM alerts)
"""  # noqa: S608


_MARK_SQL = [(spec[0], spec[1], mark_statement(*spec)) for spec in _MARKS]


def mark(now) -> dict[str, int]:
    """Flag the tickets whose warning or deadline passed, set-based (four statements).
    Returns how many tickets were marked and how many alerts were added, per mark."""
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for alert, kind, sql in _MARK_SQL:
            cursor.execute(sql, {"now": now})
            marked, alerts = cursor.fetchone()
            counts[f"{kind}_{alert}"] = marked
            counts[f"{kind}_{alert}_alerts"] = alerts
    return counts


def schedule_alerts(now) -> int:
    """Set when each new alert may be sent: now for urgent tickets and clocks that run around
    the clock, else the next business moment of the policy's calendar (nobody is woken at
    midnight for a normal ticket). One UPDATE per calendar in use."""
    calendar_ids = _pending_calendar_ids()
    calendars = (
        {c.pk: c for c in BusinessCalendar.objects.filter(pk__in=calendar_ids)}
        if calendar_ids
        else {}
    )
    updated = 0
    with connection.cursor() as cursor:
        for calendar_id, calendar in calendars.items():
            moment = next_open(schedule_for(calendar), now)
            cursor.execute(
                """UPDATE tickets_slaalert a
                      SET notify_after = CASE WHEN t.priority = %(urgent)s THEN %(now)s
                                              ELSE %(moment)s END
                     FROM tickets_ticket t JOIN tickets_slapolicy p ON p.id = t.sla_policy_id
                    WHERE a.notify_after IS NULL AND a.sent_at IS NULL AND t.id = a.ticket_id
                      AND p.calendar_id = %(calendar)s""",
                {"urgent": Priority.URGENT, "now": now, "moment": moment, "calendar": calendar_id},
            )
            updated += cursor.rowcount
        # Everything else runs around the clock (or lost its policy): send now.
        cursor.execute(
            "UPDATE tickets_slaalert SET notify_after = %s "
            "WHERE notify_after IS NULL AND sent_at IS NULL",
            [now],
        )
        updated += cursor.rowcount
    return updated


def _pending_calendar_ids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT DISTINCT p.calendar_id
                 FROM tickets_slaalert a
                 JOIN tickets_ticket t ON t.id = a.ticket_id
                 JOIN tickets_slapolicy p ON p.id = t.sla_policy_id
                WHERE a.notify_after IS NULL AND a.sent_at IS NULL
                  AND p.calendar_id IS NOT NULL"""
        )
        return [row[0] for row in cursor.fetchall()]
