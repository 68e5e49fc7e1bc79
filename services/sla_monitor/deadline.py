"""Due times of SLA clocks: an ISO 8601 policy duration on a partner's clock.

How a duration counts
---------------------
Under ``calendar`` every part is plain elapsed time: ``P1DT2H`` is 26 hours.

Under ``business_hours`` the two halves of the duration count differently:

- the *date part* (``PnW``, ``PnD``) counts **working days**: the due time is the same local time of day
  n working days later, per the partner's calendar (its working weekdays, minus its country's public
  holidays). A week is as many working days as the partner works in a week, so ``P1W`` for a
  Monday-Friday partner is five working days (normally the same weekday a week later). Days and weeks
  must be whole numbers here (use hours for fractions); ``parse_iso_duration`` already rejects ``Y``/``M``.
- the *time part* (``TnHnMnS``) counts business time (see ``BusinessCalendar.add``): ``PT4H`` is four
  working hours.

The clock is paused outside business hours, so a clock started in the evening or on a weekend starts at
the next opening. A clock that starts exactly at an opening (or is paused until one) is due at the
*closing* of its n-th working day rather than at the next opening after it; both are the same business
instant, and the closing is what people mean by "within one business day": ``P1D`` from Friday 18:00 is
Monday 17:00. The time part is added after the days: ``P1DT2H`` from Tuesday 10:00 is Wednesday 12:00.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from services.sla_monitor.clock import BusinessCalendar, ClockKind, parse_iso_duration
from shared.models import SlaPartner

log = logging.getLogger(__name__)

CLOCKS = ("business_hours", "calendar")
DEFAULT_CALENDAR = BusinessCalendar()  # UTC, 09:00-17:00, Monday to Friday, no holidays
_ONE_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)
_DATE_PART = re.compile(r"P(?:(?P<weeks>[0-9.,]+)W)?(?:(?P<days>[0-9.,]+)D)?(?P<time>T.*)?")
_MAX_WALK_DAYS = 20 * 366


def split_duration(text: str) -> tuple[str | None, str | None, timedelta]:
    """(weeks, days, time part) of a valid duration; raises ``ValueError`` for an invalid one."""
    parse_iso_duration(text)
    match = _DATE_PART.fullmatch(text)
    if match is None:  # pragma: no cover - parse_iso_duration accepted it, so it has this shape
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    time_part = parse_iso_duration("P" + match["time"]) if match["time"] else timedelta(0)
    return match["weeks"], match["days"], time_part


def validate_duration(text: str, *, clock: str) -> timedelta:
    """The duration's length in plain time, or ``ValueError`` with a message for the client."""
    length = parse_iso_duration(text)
    if length <= timedelta(0):
        raise ValueError("must be longer than zero")
    if clock == "business_hours":
        weeks, days, _ = split_duration(text)
        if any(part is not None and not part.isdigit() for part in (weeks, days)):
            raise ValueError("under business_hours days and weeks count working days and must be whole "
                             "numbers; use hours for fractions")
    return length


def calendar_for(partner: SlaPartner | None) -> BusinessCalendar:
    """The partner's calendar from the projection; UTC 09-17 Mon-Fri for an unknown or unusable one."""
    if partner is None:
        return DEFAULT_CALENDAR
    try:
        return BusinessCalendar.from_partner(partner.timezone, partner.business_hours, partner.holiday_country)
    except ValueError as exc:
        log.warning("partner %s has an unusable calendar (%s); using UTC 09-17 Mon-Fri", partner.partner_id, exc)
        return DEFAULT_CALENDAR


def next_business_instant(calendar: BusinessCalendar, at: datetime) -> datetime:
    """``at`` when the clock runs then, else the next opening (one tick of business time, minus the tick:
    ``BusinessCalendar.add`` already knows how to skip closed time)."""
    return calendar.add(at, _TICK) - _TICK


def add_working_days(calendar: BusinessCalendar, start: datetime, days: int) -> datetime:
    """The same local time of day ``days`` working days after ``start`` (see the module docstring)."""
    begin = next_business_instant(calendar, start)
    if days == 0:
        return begin
    zone = calendar.zone
    local = begin.astimezone(zone)
    day, time_of_day = local.date(), local.time()
    at_opening = time_of_day == calendar.start
    counted = 1 if at_opening and calendar.is_working_day(day) else 0
    for _ in range(_MAX_WALK_DAYS):
        if counted == days:
            break
        day += _ONE_DAY
        if calendar.is_working_day(day):
            counted += 1
    else:
        raise ValueError(f"no {days} working days within {_MAX_WALK_DAYS} days of this calendar")
    if at_opening:
        return datetime.combine(day, calendar.end, tzinfo=zone).astimezone(UTC)
    return datetime.combine(day, time_of_day, tzinfo=zone).astimezone(UTC)


def due_after(start: datetime, duration: str, *, clock: ClockKind | str, calendar: BusinessCalendar) -> datetime:
    """When a clock of ``duration`` started at ``start`` is due (UTC)."""
    if clock == "calendar":
        return start.astimezone(UTC) + parse_iso_duration(duration)
    if clock != "business_hours":
        raise ValueError(f"unknown clock {clock!r}")
    weeks, days, time_part = split_duration(duration)
    working_days = int(weeks or 0) * len(calendar.days) + int(days or 0)
    due = add_working_days(calendar, start, working_days) if working_days else start.astimezone(UTC)
    return calendar.add(due, time_part) if time_part else due
