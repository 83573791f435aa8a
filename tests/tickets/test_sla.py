"""Business-time arithmetic (tickets.sla): property-based tests with hypothesis.

The reference model counts in local wall-clock minutes, day by day. Business hours in these
schedules never include the 02:00–03:00 hour in which European clocks change, so wall-clock
minutes and elapsed minutes agree inside them: the engine, which works in UTC intervals, must
give the same answer as the model on every day of the year, across daylight-saving changes
and holidays.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import holidays
import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tickets import sla

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
OFFICE = (((540, 1020),),) * 5 + ((), ())  # Mon–Fri 09:00–17:00
SPLIT = ((480, 720), (780, 1080))  # 08:00–12:00 and 13:00–18:00
CUSTOM_CLOSED = frozenset({dt.date(2025, 3, 31), dt.date(2025, 10, 27), dt.date(2026, 3, 30)})

SCHEDULES = {
    "berlin_office": sla.Schedule(zone=BERLIN, weekly=OFFICE, country="DE"),
    "berlin_split_custom": sla.Schedule(
        zone=BERLIN,
        weekly=(SPLIT,) * 6 + ((),),
        country="DE",
        subdivision="BY",
        closed_dates=CUSTOM_CLOSED,
    ),
    "new_york_office": sla.Schedule(zone=NEW_YORK, weekly=OFFICE, country="US"),
    "berlin_evening": sla.Schedule(zone=BERLIN, weekly=(((1080, 1440),),) * 7),
}

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Moments from 2024 to 2026: six daylight-saving changes in each zone, Easter, Christmas.
moments = st.datetimes(
    # hypothesis takes naive bounds and attaches the zone itself
    min_value=dt.datetime(2024, 1, 1),  # noqa: DTZ001
    max_value=dt.datetime(2026, 12, 1),  # noqa: DTZ001
    timezones=st.just(dt.UTC),
)
amounts = st.integers(min_value=1, max_value=60 * 24 * 20).map(lambda m: dt.timedelta(minutes=m))
schedule_names = st.sampled_from(sorted(SCHEDULES))


def closed(schedule: sla.Schedule, day: dt.date) -> bool:
    if day in schedule.closed_dates:
        return True
    if schedule.country:
        return day in holidays.country_holidays(
            schedule.country, subdiv=schedule.subdivision or None, years=day.year
        )
    return False


def model_add(schedule: sla.Schedule, start: dt.datetime, amount: dt.timedelta) -> dt.datetime:
    """The reference: walk local days, consume wall-clock minutes of each business range."""
    local = start.astimezone(schedule.zone)
    day = local.date()
    now_minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7
    remaining = amount.total_seconds() / 60
    first = True
    while True:
        if not closed(schedule, day):
            for a, b in schedule.weekly[day.weekday()]:
                begin = max(a, now_minute) if first else a
                if begin >= b:
                    continue
                if remaining <= b - begin:
                    minute = begin + remaining
                    base = dt.datetime.combine(day, dt.time(0), tzinfo=schedule.zone)
                    wall = base.replace(tzinfo=None) + dt.timedelta(minutes=minute)
                    return wall.replace(tzinfo=schedule.zone).astimezone(dt.UTC)
                remaining -= b - begin
        day += dt.timedelta(days=1)
        first = False


@PROPERTY
@given(name=schedule_names, start=moments, amount=amounts)
def test_a_due_time_never_falls_outside_business_hours(name, start, amount):
    schedule = SCHEDULES[name]
    due = sla.add(schedule, start, amount)
    assert sla.is_open(schedule, due)
    local = due.astimezone(schedule.zone)
    assert not closed(
        schedule,
        local.date() if local.time() != dt.time(0) else local.date() - dt.timedelta(days=1),
    )
    assert due > start


@PROPERTY
@given(name=schedule_names, start=moments, amount=amounts)
def test_business_time_between_start_and_due_is_the_amount(name, start, amount):
    schedule = SCHEDULES[name]
    assert sla.between(schedule, start, sla.add(schedule, start, amount)) == amount


@PROPERTY
@given(name=schedule_names, start=moments, amount=amounts)
def test_the_engine_agrees_with_the_wall_clock_model_across_dst_and_holidays(name, start, amount):
    schedule = SCHEDULES[name]
    expected = model_add(schedule, start, amount)
    assert abs(sla.add(schedule, start, amount) - expected) < dt.timedelta(milliseconds=1)


@PROPERTY
@given(name=schedule_names, start=moments, target=amounts, paused=amounts)
def test_pausing_for_x_business_hours_moves_the_due_time_by_exactly_x(name, start, target, paused):
    """What the clock does on resume: the due time is recomputed with the paused business
    time added back, and it moves by exactly that much business time."""
    schedule = SCHEDULES[name]
    due = sla.add(schedule, start, target)
    moved = sla.add(schedule, start, target + paused)
    assert sla.between(schedule, due, moved) == paused
    assert moved == sla.add(schedule, due, paused)


@PROPERTY
@given(
    name=schedule_names,
    start=moments,
    pause_start=amounts,
    pause_length=st.integers(min_value=0, max_value=60 * 24 * 40),
)
def test_a_pause_counts_only_the_business_time_inside_it(name, start, pause_start, pause_length):
    schedule = SCHEDULES[name]
    a = start + pause_start
    b = a + dt.timedelta(minutes=pause_length)
    inside = sla.between(schedule, a, b)
    assert dt.timedelta(0) <= inside <= b - a
    # Splitting the pause anywhere gives the same total.
    middle = a + (b - a) / 3
    assert sla.between(schedule, a, middle) + sla.between(schedule, middle, b) == inside


@PROPERTY
@given(
    day=st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2026, 11, 1)),
    days=st.integers(min_value=1, max_value=25),
    zone=st.sampled_from(["berlin_office", "new_york_office"]),
)
def test_whole_business_days_from_opening_end_at_closing_time_local(day, days, zone):
    """n × 8 business hours from 09:00 on a working day end at 17:00 local time of the n-th
    working day, whatever the clocks did in between."""
    schedule = SCHEDULES[zone]
    assume(day.weekday() < 5 and not closed(schedule, day))
    start = dt.datetime.combine(day, dt.time(9), tzinfo=schedule.zone)
    due = sla.add(schedule, start, dt.timedelta(hours=8 * days)).astimezone(schedule.zone)
    assert due.time() == dt.time(17)
    working, current = 0, day
    while True:
        if current.weekday() < 5 and not closed(schedule, current):
            working += 1
            if working == days:
                break
        current += dt.timedelta(days=1)
    assert due.date() == current


def test_dst_spring_forward_keeps_business_hours_at_eight_real_hours():
    schedule = SCHEDULES["berlin_office"]
    # Friday 28 March 2025 09:00 CET; clocks go forward on Sunday 30 March.
    start = dt.datetime(2025, 3, 28, 9, tzinfo=BERLIN)
    due = sla.add(schedule, start, dt.timedelta(hours=9))
    assert due.astimezone(BERLIN) == dt.datetime(2025, 3, 31, 10, tzinfo=BERLIN)
    assert due.utcoffset() == dt.timedelta(0) and due.astimezone(
        BERLIN
    ).utcoffset() == dt.timedelta(hours=2)


def test_holidays_from_the_package_and_custom_dates_are_closed():
    schedule = SCHEDULES["berlin_split_custom"]
    # 24 Dec 2025 is a Wednesday, 25/26 are public holidays in Germany; 6 Jan is a Bavarian one.
    start = dt.datetime(2025, 12, 24, 17, 30, tzinfo=BERLIN)
    due = sla.add(schedule, start, dt.timedelta(hours=1)).astimezone(BERLIN)
    assert due == dt.datetime(2025, 12, 27, 8, 30, tzinfo=BERLIN)  # Saturday is open again
    monday = dt.datetime(2025, 3, 31, 7, tzinfo=BERLIN)  # a custom closed date
    assert sla.add(schedule, monday, dt.timedelta(minutes=1)).astimezone(BERLIN) == dt.datetime(
        2025, 4, 1, 8, 1, tzinfo=BERLIN
    )
    assert sla.between(schedule, monday, dt.datetime(2025, 4, 1, 0, tzinfo=BERLIN)) == dt.timedelta(
        0
    )


def test_around_the_clock_is_plain_elapsed_time():
    start = dt.datetime(2025, 3, 30, 0, 30, tzinfo=dt.UTC)
    assert sla.add(sla.AROUND_THE_CLOCK, start, dt.timedelta(hours=5)) == start + dt.timedelta(
        hours=5
    )
    assert sla.between(sla.AROUND_THE_CLOCK, start, start + dt.timedelta(hours=5)) == dt.timedelta(
        hours=5
    )
    assert sla.is_open(sla.AROUND_THE_CLOCK, start)


def test_zero_amount_is_the_next_business_moment():
    schedule = SCHEDULES["berlin_office"]
    # Whit Monday (9 June 2025) is a public holiday in Germany: Saturday the 7th waits for Tuesday.
    assert sla.next_open(schedule, dt.datetime(2025, 6, 7, 12, tzinfo=BERLIN)).astimezone(
        BERLIN
    ) == dt.datetime(2025, 6, 10, 9, tzinfo=BERLIN)
    saturday = dt.datetime(2025, 6, 14, 12, tzinfo=BERLIN)
    assert sla.next_open(schedule, saturday).astimezone(BERLIN) == dt.datetime(
        2025, 6, 16, 9, tzinfo=BERLIN
    )
    tuesday = dt.datetime(2025, 6, 17, 12, tzinfo=BERLIN)
    assert sla.next_open(schedule, tuesday) == tuesday


def test_a_calendar_without_hours_is_refused_not_looped():
    never = sla.Schedule(zone=BERLIN, weekly=((),) * 7)
    with pytest.raises(sla.CalendarError, match="no business hours"):
        sla.add(never, dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.timedelta(minutes=1))
    with pytest.raises(ValueError, match="negative"):
        sla.add(
            SCHEDULES["berlin_office"], dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.timedelta(-1)
        )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00-17:00", [[540, 1020]]),
        ("8:00-12:00, 13:00-18:30", [[480, 720], [780, 1110]]),
        ("00:00-24:00", [[0, 1440]]),
        ("", []),
    ],
)
def test_day_hours_parse_and_format(text, expected):
    assert sla.parse_day_hours(text) == expected
    assert sla.parse_day_hours(sla.format_day_hours(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9-17", "not a time range"),
        ("17:00-09:00", "ends before it starts"),
        ("09:00-12:00, 11:00-13:00", "must not overlap"),
        ("09:00-25:00", "not a time of day"),
        ("09:70-10:00", "not a time of day"),
    ],
)
def test_bad_day_hours_are_refused_with_the_reason(text, message):
    with pytest.raises(ValidationError, match=message):
        sla.parse_day_hours(text, day="Monday")


def test_time_zone_and_country_checks_name_the_problem():
    assert sla.check_time_zone("Europe/Berlin") == "Europe/Berlin"
    with pytest.raises(ValidationError, match="Unknown time zone"):
        sla.check_time_zone("Mars/Olympus")
    assert sla.check_country("de", "by") == ("DE", "BY")
    with pytest.raises(ValidationError, match="No public holidays known"):
        sla.check_country("XX")
    with pytest.raises(ValidationError, match="not a subdivision"):
        sla.check_country("DE", "ZZ")
