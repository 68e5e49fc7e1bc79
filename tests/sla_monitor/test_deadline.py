"""Due times under a policy: working days under business_hours, plain time under calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.sla_monitor.clock import BusinessCalendar
from services.sla_monitor.deadline import DEFAULT_CALENDAR, calendar_for, due_after, validate_duration
from shared.models import SlaPartner
from tests.sla_monitor.conftest import t

LA = ZoneInfo("America/Los_Angeles")


def due(start: datetime, duration: str, clock: str = "business_hours",
        calendar: BusinessCalendar = DEFAULT_CALENDAR) -> datetime:
    return due_after(start, duration, clock=clock, calendar=calendar)


def test_calendar_clock_counts_plain_time() -> None:
    assert due(t(20, 16, 30), "P1DT2H", "calendar") == t(21, 18, 30)
    assert due(t(20, 16, 30), "PT3S", "calendar") == t(20, 16, 30, 3)
    assert due(t(20, 16, 30), "P1W", "calendar") == t(27, 16, 30)


def test_hours_count_business_time() -> None:
    assert due(t(20, 16, 30), "PT4H") == t(23, 12, 30)  # Friday 16:30 + 4 working hours: Monday 12:30
    assert due(t(21, 10), "PT1H") == t(23, 10)  # Saturday: paused until Monday's opening


@pytest.mark.parametrize(("start", "duration", "expected"), [
    (t(17, 10), "P1D", t(18, 10)),        # Tuesday 10:00 -> Wednesday 10:00
    (t(20, 16, 30), "P1D", t(23, 16, 30)),  # Friday -> Monday, same time of day
    (t(20, 18), "P1D", t(23, 17)),        # Friday evening: paused; one working day is Monday's close
    (t(16, 9), "P1D", t(16, 17)),         # started at the opening: that day's close
    (t(22, 12), "P2D", t(24, 17)),        # Sunday: Monday and Tuesday
    (t(18, 10), "P1W", t(25, 10)),        # a week of working days: the same weekday next week
    (t(18, 10), "P7D", t(27, 10)),        # seven working days
    (t(17, 10), "P1DT2H", t(18, 12)),     # days first, then business hours
    (t(17, 16), "P1DT2H", t(19, 10)),     # Wednesday 16:00 + 2 working hours: Thursday 10:00
])
def test_days_count_working_days(start: datetime, duration: str, expected: datetime) -> None:
    assert due(start, duration) == expected


def test_days_skip_the_partners_holidays_in_its_zone() -> None:
    partner = SlaPartner(partner_id="acme", timezone="America/Los_Angeles", holiday_country="US",
                         business_hours={"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"})
    cal = calendar_for(partner)
    start = datetime(2026, 11, 25, 10, tzinfo=LA)  # Wednesday before Thanksgiving
    assert due(start, "P1D", calendar=cal) == datetime(2026, 11, 27, 10, tzinfo=LA)
    assert due(start, "P1D", "calendar", calendar=cal) == datetime(2026, 11, 26, 10, tzinfo=LA)


def test_unknown_or_broken_partner_calendar_falls_back_to_utc_office_hours() -> None:
    assert calendar_for(None) == BusinessCalendar()
    broken = SlaPartner(partner_id="x", timezone="Mars/Olympus", business_hours={}, holiday_country=None)
    assert calendar_for(broken) == BusinessCalendar()


@pytest.mark.parametrize(("text", "clock"), [
    ("P1.5D", "business_hours"), ("P0.5W", "business_hours"), ("PT0S", "calendar"), ("P0D", "business_hours"),
    ("P1M", "calendar"), ("4 hours", "calendar"),
])
def test_invalid_policy_durations(text: str, clock: str) -> None:
    with pytest.raises(ValueError):
        validate_duration(text, clock=clock)


def test_fractional_days_are_fine_on_the_calendar_clock() -> None:
    assert validate_duration("P1.5D", clock="calendar") == timedelta(hours=36)


@given(start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)),
       days=st.integers(min_value=1, max_value=30), hours=st.integers(min_value=0, max_value=20))
def test_n_working_days_are_n_days_of_business_time(start: datetime, days: int, hours: int) -> None:
    """With uniform 8-hour days, n working days plus h hours is exactly n*8+h hours of business time."""
    end = due(start, f"P{days}DT{hours}H" if hours else f"P{days}D")
    assert DEFAULT_CALENDAR.elapsed(start, end) == timedelta(hours=8 * days + hours)
    assert end > start
