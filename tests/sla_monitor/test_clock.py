from __future__ import annotations

import time as perf
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.sla_monitor.clock import (
    BusinessCalendar,
    add_duration,
    format_iso_duration,
    parse_iso_duration,
)

LA = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")
EVERY_DAY = (1, 2, 3, 4, 5, 6, 7)


def la(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LA)


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def business_time_on(cal: BusinessCalendar, day: date) -> timedelta:
    """Business time between two local midnights (both exist in the zones used below)."""
    zone = ZoneInfo(cal.timezone)
    return cal.elapsed(local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone))


# ------------------------------------------------------------------------------------------------
# Required and realistic examples


def test_required_example_friday_afternoon_over_weekend_and_monday_holiday() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles", extra_holidays=frozenset({date(2026, 11, 23)}))

    due = cal.add(la(2026, 11, 20, 16, 30), timedelta(hours=4))

    assert due == la(2026, 11, 24, 12, 30)
    assert due.tzinfo is UTC
    assert due == utc(2026, 11, 24, 20, 30)  # PST is UTC-8


def test_thanksgiving_is_skipped_with_real_us_holidays() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles", holiday_country="US")

    assert cal.add(la(2026, 11, 25, 15), timedelta(hours=4)) == la(2026, 11, 27, 11)
    assert not cal.is_business_time(la(2026, 11, 26, 10))
    assert cal.elapsed(la(2026, 11, 25, 15), la(2026, 11, 27, 11)) == timedelta(hours=4)


def test_subdivision_holidays_apply_only_with_the_subdivision() -> None:
    cesar_chavez_day = la(2026, 3, 31, 10)  # a Tuesday, a holiday in California only
    national = BusinessCalendar(timezone="America/Los_Angeles", holiday_country="US")
    california = BusinessCalendar(
        timezone="America/Los_Angeles", holiday_country="US", holiday_subdivision="CA"
    )

    assert national.is_business_time(cesar_chavez_day)
    assert not california.is_business_time(cesar_chavez_day)


def test_four_business_hours_after_13_00_is_17_00_the_window_end() -> None:
    cal = BusinessCalendar()

    assert cal.add(utc(2026, 6, 3, 13), timedelta(hours=4)) == utc(2026, 6, 3, 17)
    assert cal.is_business_time(utc(2026, 6, 3, 16, 59) + timedelta(seconds=59))
    assert not cal.is_business_time(utc(2026, 6, 3, 17))
    assert cal.is_business_time(utc(2026, 6, 3, 9))


def test_clock_is_paused_outside_business_hours() -> None:
    cal = BusinessCalendar()

    assert cal.add(utc(2026, 6, 3, 7), timedelta(hours=1)) == utc(2026, 6, 3, 10)  # before opening
    assert cal.add(utc(2026, 6, 3, 18), timedelta(hours=1)) == utc(2026, 6, 4, 10)  # after closing
    assert cal.add(utc(2026, 6, 6, 12), timedelta(hours=1)) == utc(2026, 6, 8, 10)  # Saturday
    assert cal.add(utc(2026, 6, 3, 16), timedelta(hours=2)) == utc(2026, 6, 4, 10)  # spans the night


def test_zero_duration_returns_the_start_itself_even_outside_hours() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles")
    saturday = la(2026, 6, 6, 3)

    result = cal.add(saturday, timedelta(0))

    assert result == saturday
    assert result.tzinfo is UTC


def test_elapsed_is_zero_when_end_is_not_after_start() -> None:
    cal = BusinessCalendar()

    assert cal.elapsed(utc(2026, 6, 3, 12), utc(2026, 6, 3, 12)) == timedelta(0)
    assert cal.elapsed(utc(2026, 6, 3, 12), utc(2026, 6, 3, 10)) == timedelta(0)
    assert cal.elapsed(utc(2026, 6, 5, 12), utc(2026, 6, 8, 12)) == timedelta(hours=8)


def test_other_input_offsets_are_the_same_instant() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles")
    start_la = la(2026, 6, 3, 10)

    assert cal.add(start_la, timedelta(hours=3)) == cal.add(start_la.astimezone(BERLIN), timedelta(hours=3))


def test_long_durations_skip_whole_days_quickly() -> None:
    cal = BusinessCalendar()
    start = utc(2026, 1, 5, 9)  # a Monday; no holidays in this calendar
    thirty_days = parse_iso_duration("P30D")  # 720 business hours = 90 eight-hour days = 18 weeks

    began = perf.perf_counter()
    due = cal.add(start, thirty_days)
    took = perf.perf_counter() - began

    assert due == utc(2026, 5, 8, 17)  # the Friday of the 18th week, at closing time
    assert took < 0.05
    assert cal.elapsed(start, due) == thirty_days


def test_calendar_without_any_business_time_raises_instead_of_looping() -> None:
    saturdays = frozenset(date(2026, 1, 3) + timedelta(weeks=n) for n in range(52 * 5))
    cal = BusinessCalendar(days=(6,), extra_holidays=saturdays)

    with pytest.raises(ValueError, match="no business time"):
        cal.add(utc(2026, 1, 1, 0), timedelta(minutes=1))
    assert cal.elapsed(utc(2026, 1, 1, 0), utc(2027, 1, 1, 0)) == timedelta(0)


# ------------------------------------------------------------------------------------------------
# Daylight saving time


def test_los_angeles_spring_forward_day() -> None:
    office = BusinessCalendar(timezone="America/Los_Angeles", days=EVERY_DAY)
    night = BusinessCalendar(timezone="America/Los_Angeles", days=EVERY_DAY, start=time(0), end=time(6))
    spring_forward = date(2026, 3, 8)

    assert business_time_on(office, spring_forward) == timedelta(hours=8)
    assert business_time_on(night, spring_forward) == timedelta(hours=5)  # 02:00-03:00 never happens
    assert business_time_on(night, date(2026, 3, 7)) == timedelta(hours=6)
    # Saturday's 8 hours at UTC-8, then 2 hours on Sunday at UTC-7.
    assert office.add(la(2026, 3, 7, 9), timedelta(hours=10)) == utc(2026, 3, 8, 18)
    assert office.add(la(2026, 3, 7, 9), timedelta(hours=10)) == la(2026, 3, 8, 11)
    # Inside the night window the jump is not business time: 01:30 + 1h is 03:30 PDT.
    assert night.add(la(2026, 3, 8, 1, 30), timedelta(hours=1)) == la(2026, 3, 8, 3, 30)


def test_los_angeles_weekend_with_offset_change() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles")

    # Friday 16:00 PST + 2h: one hour on Friday, one hour on Monday (now PDT).
    assert cal.add(la(2026, 3, 6, 16), timedelta(hours=2)) == la(2026, 3, 9, 10)
    assert cal.add(la(2026, 3, 6, 16), timedelta(hours=2)) == utc(2026, 3, 9, 17)
    assert cal.add(la(2026, 10, 30, 16), timedelta(hours=2)) == utc(2026, 11, 2, 18)  # PDT -> PST


def test_los_angeles_fall_back_day() -> None:
    office = BusinessCalendar(timezone="America/Los_Angeles", days=EVERY_DAY)
    night = BusinessCalendar(timezone="America/Los_Angeles", days=EVERY_DAY, start=time(0), end=time(6))
    fall_back = date(2026, 11, 1)

    assert business_time_on(office, fall_back) == timedelta(hours=8)
    assert business_time_on(night, fall_back) == timedelta(hours=7)  # 01:00-02:00 happens twice
    assert office.add(la(2026, 10, 31, 16), timedelta(hours=2)) == utc(2026, 11, 1, 18)
    assert office.add(la(2026, 10, 31, 16), timedelta(hours=2)) == la(2026, 11, 1, 10)
    # 00:30 PDT + 3h: through both 01:xx hours, ending 02:30 PST.
    assert night.add(la(2026, 11, 1, 0, 30), timedelta(hours=3)) == utc(2026, 11, 1, 10, 30)


def test_berlin_spring_forward_day() -> None:
    office = BusinessCalendar(timezone="Europe/Berlin", days=EVERY_DAY)
    night = BusinessCalendar(timezone="Europe/Berlin", days=EVERY_DAY, start=time(1), end=time(5))
    spring_forward = date(2026, 3, 29)

    assert business_time_on(office, spring_forward) == timedelta(hours=8)
    assert business_time_on(night, spring_forward) == timedelta(hours=3)
    # 01:45 CET + 30 min: 02:15 does not exist, the clock reads 03:15 CEST.
    assert night.add(datetime(2026, 3, 29, 1, 45, tzinfo=BERLIN), timedelta(minutes=30)) == utc(
        2026, 3, 29, 1, 15
    )
    assert not night.is_business_time(utc(2026, 3, 29, 4))  # 06:00 CEST, after the window
    assert night.is_business_time(utc(2026, 3, 29, 2, 59))  # 04:59 CEST


def test_window_that_falls_into_the_spring_forward_gap_is_empty() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles", days=EVERY_DAY, start=time(2, 30), end=time(3))

    assert business_time_on(cal, date(2026, 3, 8)) == timedelta(0)
    assert business_time_on(cal, date(2026, 3, 9)) == timedelta(minutes=30)
    assert cal.add(la(2026, 3, 8, 0), timedelta(minutes=10)) == la(2026, 3, 9, 2, 40)


# ------------------------------------------------------------------------------------------------
# Construction and validation


def test_defaults() -> None:
    cal = BusinessCalendar()

    assert (cal.timezone, cal.days, cal.start, cal.end) == ("UTC", (1, 2, 3, 4, 5), time(9), time(17))
    assert cal.holiday_country is None
    assert cal.extra_holidays == frozenset()
    assert hash(cal) == hash(BusinessCalendar())


def test_days_are_normalised() -> None:
    assert BusinessCalendar(days=(5, 1, 3, 1)).days == (1, 3, 5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": ()},
        {"days": (0, 1)},
        {"days": (8,)},
        {"days": (True,)},
        {"start": time(17), "end": time(9)},
        {"start": time(9), "end": time(9)},
        {"start": time(9, tzinfo=UTC)},
        {"timezone": "Mars/Olympus_Mons"},
        {"timezone": ""},
        {"holiday_country": "XX"},
        {"holiday_country": "US", "holiday_subdivision": "ZZ"},
        {"holiday_subdivision": "CA"},
        {"extra_holidays": frozenset({datetime(2026, 1, 1, tzinfo=UTC)})},
    ],
)
def test_invalid_calendars_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BusinessCalendar(**kwargs)  # type: ignore[arg-type]


def test_naive_datetimes_are_rejected() -> None:
    cal = BusinessCalendar()
    naive = datetime(2026, 6, 3, 12)

    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add(naive, timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.elapsed(naive, utc(2026, 6, 4, 12))
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.elapsed(utc(2026, 6, 2, 12), naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.is_business_time(naive)
    for clock in ("calendar", "business_hours"):
        with pytest.raises(ValueError, match="timezone-aware"):
            add_duration(naive, timedelta(hours=1), clock=clock, calendar=cal)  # type: ignore[arg-type]


def test_negative_durations_are_rejected() -> None:
    cal = BusinessCalendar()

    with pytest.raises(ValueError, match="negative"):
        cal.add(utc(2026, 6, 3, 12), timedelta(seconds=-1))
    with pytest.raises(ValueError, match="negative"):
        add_duration(utc(2026, 6, 3, 12), timedelta(seconds=-1), clock="calendar", calendar=cal)


def test_from_partner_with_everything_missing_uses_defaults() -> None:
    assert BusinessCalendar.from_partner(None, None, None) == BusinessCalendar()
    assert BusinessCalendar.from_partner("UTC", {}, "") == BusinessCalendar()


def test_from_partner_reads_business_hours() -> None:
    cal = BusinessCalendar.from_partner(
        "Europe/Berlin", {"days": [1, 2, 3, 4], "start": "08:30", "end": "16:00"}, "DE"
    )

    assert cal == BusinessCalendar(
        timezone="Europe/Berlin", days=(1, 2, 3, 4), start=time(8, 30), end=time(16), holiday_country="DE"
    )


def test_from_partner_fills_missing_keys_with_defaults() -> None:
    cal = BusinessCalendar.from_partner("America/Los_Angeles", {"start": "10:00"}, "us")

    assert (cal.days, cal.start, cal.end) == ((1, 2, 3, 4, 5), time(10), time(17))
    assert cal.holiday_country == "US"


def test_from_partner_ignores_unknown_holiday_regions() -> None:
    assert BusinessCalendar.from_partner("UTC", None, "XX").holiday_country is None
    with_subdivision = BusinessCalendar.from_partner("America/Los_Angeles", None, "US-CA")
    assert (with_subdivision.holiday_country, with_subdivision.holiday_subdivision) == ("US", "CA")
    unknown_subdivision = BusinessCalendar.from_partner("America/Los_Angeles", None, "US-ZZ")
    assert (unknown_subdivision.holiday_country, unknown_subdivision.holiday_subdivision) == ("US", None)


@pytest.mark.parametrize(
    "business_hours",
    [{"start": "nine"}, {"end": 17}, {"days": "12345"}, {"days": [1, 9]}, {"start": "18:00"}],
)
def test_from_partner_rejects_malformed_business_hours(business_hours: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BusinessCalendar.from_partner("UTC", business_hours, None)


def test_from_partner_rejects_unknown_timezone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        BusinessCalendar.from_partner("Europe/Atlantis", None, None)


# ------------------------------------------------------------------------------------------------
# add_duration


def test_add_duration_dispatches_on_clock() -> None:
    cal = BusinessCalendar(timezone="America/Los_Angeles")
    friday = la(2026, 11, 20, 16, 30)

    assert add_duration(friday, timedelta(hours=4), clock="calendar", calendar=cal) == la(
        2026, 11, 20, 20, 30
    )
    assert add_duration(friday, timedelta(hours=4), clock="business_hours", calendar=cal) == la(
        2026, 11, 23, 12, 30
    )
    assert add_duration(friday, timedelta(hours=4), clock="calendar", calendar=cal).tzinfo is UTC
    with pytest.raises(ValueError, match="unknown clock"):
        add_duration(friday, timedelta(hours=4), clock="wall", calendar=cal)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# ISO 8601 durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT4H", timedelta(hours=4)),
        ("PT24H", timedelta(hours=24)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("P2W", timedelta(days=14)),
        ("P1W2D", timedelta(days=9)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("PT90M", timedelta(minutes=90)),
        ("PT1M", timedelta(minutes=1)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT2,5S", timedelta(seconds=2.5)),
        ("PT1.5H", timedelta(minutes=90)),
        ("P0.5D", timedelta(hours=12)),
        ("PT0.0000004S", timedelta(0)),
        ("PT0.0000006S", timedelta(microseconds=1)),
        ("PT0S", timedelta(0)),
        ("P0D", timedelta(0)),
    ],
)
def test_parse_iso_duration(text: str, expected: timedelta) -> None:
    assert parse_iso_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "PT",
        "P1DT",
        "P1M",
        "P1Y",
        "P1Y2D",
        "P0M",
        "-PT1H",
        "PT-1H",
        "+PT1H",
        "pt1h",
        "PT1h",
        "4H",
        "T4H",
        " PT4H",
        "PT4H ",
        "PT4",
        "PT4HM",
        "PT1.H",
        "PT.5S",
        "PT1.5H30M",
        "P1D2W",
        "PT1S1M",
        "PT١H",
        "P99999999999D",
        "4 hours",
    ],
)
def test_parse_iso_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_iso_duration(text)


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(hours=4), "PT4H"),
        (timedelta(days=7), "P7D"),
        (timedelta(hours=1, minutes=30), "PT1H30M"),
        (timedelta(seconds=2.5), "PT2.5S"),
        (timedelta(days=1, hours=2), "P1DT2H"),
        (timedelta(days=2, seconds=1), "P2DT1S"),
        (timedelta(microseconds=1), "PT0.000001S"),
        (timedelta(0), "PT0S"),
    ],
)
def test_format_iso_duration(td: timedelta, text: str) -> None:
    assert format_iso_duration(td) == text


def test_format_iso_duration_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_iso_duration(timedelta(seconds=-1))


@settings(max_examples=200, deadline=None)
@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_format_then_parse_round_trips(td: timedelta) -> None:
    assert parse_iso_duration(format_iso_duration(td)) == td


# ------------------------------------------------------------------------------------------------
# Properties

# Zones with half-hour DST (Lord Howe), odd offsets (Kathmandu +05:45, St John's -03:30) and DST at
# midnight (Santiago). Every offset is a multiple of 15 minutes, which the grid oracle below relies on.
ZONES = [
    "UTC",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "America/St_Johns",
    "America/Santiago",
]
QUARTER = timedelta(minutes=15)


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    first, second = draw(st.lists(st.integers(0, 95), min_size=2, max_size=2, unique=True))
    start, end = sorted((first, second))
    return BusinessCalendar(
        timezone=draw(st.sampled_from(ZONES)),
        days=tuple(draw(st.sets(st.integers(1, 7), min_size=1))),
        start=time(start // 4, start % 4 * 15),
        end=time(end // 4, end % 4 * 15),
        holiday_country=draw(st.sampled_from([None, "US", "DE"])),
        extra_holidays=frozenset(draw(st.sets(st.dates(date(2025, 1, 1), date(2027, 12, 31)), max_size=5))),
    )


instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4))
positive_durations = st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=4))


def is_window_end(cal: BusinessCalendar, at: datetime) -> bool:
    """Independent of the module: does some working local day's window end exactly at ``at``?"""
    zone = ZoneInfo(cal.timezone)
    local_day = at.astimezone(zone).date()
    for day in (local_day - timedelta(days=1), local_day, local_day + timedelta(days=1)):
        # Compare in UTC: inter-zone == is always False for wall times in a DST gap or fold (PEP 495).
        if cal.is_working_day(day) and datetime.combine(day, cal.end, tzinfo=zone).astimezone(UTC) == at:
            return True
    return False


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, durations, durations)
def test_add_is_monotonic_in_duration(
    cal: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    shorter, longer = sorted((a, b))
    assert start <= cal.add(start, shorter) <= cal.add(start, longer)


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, durations, durations)
def test_add_is_additive(cal: BusinessCalendar, start: datetime, a: timedelta, b: timedelta) -> None:
    assert cal.add(cal.add(start, a), b) == cal.add(start, a + b)


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, positive_durations)
def test_add_lands_inside_a_window_or_exactly_at_its_end(
    cal: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = cal.add(start, duration)
    assert due.tzinfo is UTC
    assert cal.is_business_time(due) or is_window_end(cal, due)


@settings(max_examples=200, deadline=None)
@given(calendars(), instants, durations)
def test_elapsed_inverts_add(cal: BusinessCalendar, start: datetime, duration: timedelta) -> None:
    assert cal.elapsed(start, cal.add(start, duration)) == duration


@settings(max_examples=100, deadline=None)
@given(calendars(), st.integers(0, 3 * 365 * 96), st.integers(0, 3 * 96))
def test_elapsed_matches_counting_quarter_hours(cal: BusinessCalendar, offset: int, span: int) -> None:
    # Window bounds and offsets are all whole quarter hours, so business time is a union of whole
    # quarters on a UTC grid and can be counted one quarter at a time with is_business_time.
    start = utc(2025, 1, 1, 0) + offset * QUARTER
    end = start + span * QUARTER
    counted = sum(1 for i in range(span) if cal.is_business_time(start + i * QUARTER))
    assert cal.elapsed(start, end) == counted * QUARTER


@settings(max_examples=200, deadline=None)
@given(
    calendars(),
    st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1), timezones=st.sampled_from([UTC, LA, BERLIN])),
    durations,
)
def test_calendar_clock_is_plain_addition(
    cal: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    due = add_duration(start, duration, clock="calendar", calendar=cal)
    assert due == start.astimezone(UTC) + duration
    assert due.tzinfo is UTC
