"""Business-hours clock arithmetic for SLA deadlines.

Everything here is pure: no I/O, no "now", no database. Callers pass timezone-aware datetimes and get
timezone-aware UTC datetimes back; naive datetimes are rejected with ``ValueError`` because guessing
their zone is exactly the bug this module exists to prevent.

The model
---------
A partner's business time is the union of its *daily windows*: for every local date ``d`` that is a
working day (its ISO weekday is in ``days``) and not a holiday (public holiday of ``holiday_country`` /
``holiday_subdivision`` or one of ``extra_holidays``), the half-open interval
``[combine(d, start), combine(d, end))`` in the partner's zone.

Daylight saving time
--------------------
Windows are *built* from local wall-clock times but *measured* in UTC. We walk day by day over local
dates, attach the zone with :mod:`zoneinfo`, convert both ends to UTC and do all arithmetic there. So:

- a 09:00-17:00 day is 8 real hours even on a DST change day (the change happens at night);
- a window that contains the jump counts its real length: 00:00-06:00 on a spring-forward day is
  5 hours, on a fall-back day 7 hours;
- a wall time inside the spring-forward gap (02:30 when clocks jump from 02:00 to 03:00) does not exist;
  zoneinfo resolves it with the pre-transition offset (``fold=0``), i.e. to 03:30 new time. Ambiguous
  fall-back times resolve to their first occurrence. A window that collapses to nothing this way
  (e.g. 02:30-03:00 on the spring-forward day) simply has no business time that day.

Durations
---------
``BusinessCalendar.add`` adds a fixed length of *business* time: four hours is four working hours. What an
SLA policy's duration means is decided one level up, in ``deadline.due_after``: its hours, minutes and
seconds are business time added here, and its days and weeks count **working days** (``P7D`` is seven
working days, what a partner manager means by "7 days"; never 7 × 24 business hours). Years and months
have no fixed length and are rejected by :func:`parse_iso_duration`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

__all__ = [
    "BusinessCalendar",
    "ClockKind",
    "add_duration",
    "format_iso_duration",
    "parse_iso_duration",
]

ClockKind = Literal["business_hours", "calendar"]

_ONE_DAY = timedelta(days=1)
_ZERO = timedelta(0)

# A calendar whose every working day is a holiday (or whose windows all collapse in DST gaps) has no
# business time at all; without a bound `add` would walk to year 9999. Three years of consecutive days
# without a single business instant means the deadline can never be reached.
_IDLE_LIMIT_DAYS = 3 * 366
# Hard bound on how far `add` walks in total, whatever the duration (about 100 years, ~0.1 s worst case).
_HORIZON_DAYS = 100 * 366


# --------------------------------------------------------------------------------------------------
# Holidays


@functools.lru_cache(maxsize=1024)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """Public holidays of one (country, subdivision) for one calendar year, as a frozen set.

    We keep plain frozensets rather than the ``HolidayBase`` objects: those expand themselves to new
    years on lookup, which would mutate a shared cached object. Observed days that fall in the previous
    year (New Year's Day observed on 31 December) are reported by ``holidays`` under the year they fall
    in, which is the year we look up.
    """
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


@functools.lru_cache(maxsize=256)
def _holiday_region_supported(country: str, subdivision: str | None) -> bool:
    try:
        holidays.country_holidays(country, subdiv=subdivision)
    except NotImplementedError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Validation helpers


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _resolve_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # ValueError: malformed keys such as "../x"
        raise ValueError(f"unknown time zone {name!r}") from exc


def _parse_time(value: Any, name: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"business_hours.{name} must be a time like '09:00', got {value!r}") from exc
    raise ValueError(f"business_hours.{name} must be a time like '09:00', got {value!r}")


# --------------------------------------------------------------------------------------------------
# The calendar


@dataclass(frozen=True)
class BusinessCalendar:
    """When a partner's SLA clock runs: weekly working hours in its own time zone, minus holidays.

    ``days`` are ISO weekdays (1 = Monday ... 7 = Sunday); they are normalised to a sorted tuple without
    duplicates. ``start``/``end`` are naive local wall-clock times with ``start < end`` (no overnight
    shifts); the window is half-open, so ``end`` itself is outside business hours. Holidays are the
    public holidays of ``holiday_country`` (and ``holiday_subdivision``, e.g. ``"US"`` / ``"CA"``) from
    the ``holidays`` package plus any ``extra_holidays`` (vendor closures, company days), all as local
    dates. The dataclass is frozen and hashable, so it can be cached or used as a key.
    """

    timezone: str = "UTC"
    days: tuple[int, ...] = (1, 2, 3, 4, 5)
    start: time = time(9, 0)
    end: time = time(17, 0)
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _resolve_zone(self.timezone)

        for weekday in self.days:
            if isinstance(weekday, bool) or not isinstance(weekday, int) or not 1 <= weekday <= 7:
                raise ValueError(f"working days are ISO weekdays 1..7, got {weekday!r}")
        days = tuple(sorted(set(self.days)))
        if not days:
            raise ValueError("a business calendar needs at least one working day")
        object.__setattr__(self, "days", days)

        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise ValueError(f"{name} must be a datetime.time, got {value!r}")
            if value.tzinfo is not None:
                raise ValueError(f"{name} must be a naive local time; the zone is {self.timezone!r}")
        if not self.start < self.end:
            raise ValueError(f"end ({self.end}) must be after start ({self.start}); no overnight shifts")

        if self.holiday_subdivision is not None and self.holiday_country is None:
            raise ValueError("holiday_subdivision needs a holiday_country")
        if self.holiday_country is not None and not _holiday_region_supported(
            self.holiday_country, self.holiday_subdivision
        ):
            region = "-".join(p for p in (self.holiday_country, self.holiday_subdivision) if p)
            raise ValueError(f"no public holiday data for {region!r}")

        extra = frozenset(self.extra_holidays)
        for closed in extra:
            # datetime is a subclass of date but never equal to one, so it would silently never match.
            if isinstance(closed, datetime) or not isinstance(closed, date):
                raise ValueError(f"extra_holidays must contain dates, got {closed!r}")
        object.__setattr__(self, "extra_holidays", extra)

    @classmethod
    def from_partner(
        cls,
        timezone: str | None,
        business_hours: Mapping[str, Any] | None,
        holiday_country: str | None,
    ) -> BusinessCalendar:
        """Build a calendar from a partner record.

        ``business_hours`` looks like ``{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"}``;
        missing keys (or a missing mapping, or a missing timezone) take the defaults and unknown keys are
        ignored. Malformed values raise ``ValueError``.

        ``holiday_country`` is an ISO 3166 code, optionally with a subdivision (``"US-CA"``). Holiday data
        is a nicety, not a reason to stop the SLA clock: an unknown country means no public holidays,
        and an unknown subdivision falls back to the country's national holidays.
        """
        hours = business_hours or {}
        kwargs: dict[str, Any] = {}
        if timezone:
            kwargs["timezone"] = timezone
        if hours.get("days") is not None:
            raw_days = hours["days"]
            if isinstance(raw_days, str | bytes) or not isinstance(raw_days, Iterable):
                raise ValueError(f"business_hours.days must be a list of ISO weekdays, got {raw_days!r}")
            kwargs["days"] = tuple(raw_days)
        for name in ("start", "end"):
            if hours.get(name) is not None:
                kwargs[name] = _parse_time(hours[name], name)

        country, subdivision = _split_holiday_region(holiday_country)
        if country is not None and not _holiday_region_supported(country, None):
            country, subdivision = None, None
        if country is not None and subdivision is not None:
            if not _holiday_region_supported(country, subdivision):
                subdivision = None
        return cls(holiday_country=country, holiday_subdivision=subdivision, **kwargs)

    # ----------------------------------------------------------------------------------------------
    # Queries

    @property
    def zone(self) -> ZoneInfo:
        """The partner's zone (``ZoneInfo`` instances are cached by the standard library)."""
        return ZoneInfo(self.timezone)

    def is_holiday(self, day: date) -> bool:
        """Whether the local date ``day`` is a public holiday or an extra closure."""
        if day in self.extra_holidays:
            return True
        if self.holiday_country is None:
            return False
        return day in _public_holidays(self.holiday_country, self.holiday_subdivision, day.year)

    def is_working_day(self, day: date) -> bool:
        """Whether the local date ``day`` has a business window (before any DST collapse)."""
        return day.isoweekday() in self.days and not self.is_holiday(day)

    def is_business_time(self, at: datetime) -> bool:
        """Whether the clock runs at instant ``at``: inside ``[start, end)`` on a working local day."""
        _require_aware(at, "at")
        at = at.astimezone(UTC)
        zone = self.zone
        local_day = at.astimezone(zone).date()
        # A window is built from its own local date, so it normally only holds instants of that date; the
        # neighbours are checked too for zones whose DST jump crosses midnight.
        for day in (local_day - _ONE_DAY, local_day, local_day + _ONE_DAY):
            window = self._window(day, zone)
            if window is not None and window[0] <= at < window[1]:
                return True
        return False

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant (UTC) at which ``duration`` of business time has elapsed after ``start``.

        If ``start`` is inside a window the clock runs from ``start``; otherwise it is paused until the
        next window opens. A zero duration returns ``start`` itself (as UTC, even outside business
        hours). When the time runs out exactly at a window's end, that end is returned: four business
        hours after 13:00 is 17:00, not 09:00 the next working day. This is what makes ``add`` additive:
        ``add(add(s, a), b) == add(s, a + b)``.

        Cost is one step per local day (a couple of microseconds), so ``P30D`` of 8-hour business time
        (~4 months) takes well under a millisecond.

        Raises ``ValueError`` for a negative duration, or when no business time exists for three years
        in a row (every working day a holiday), or beyond a ~100-year horizon.
        """
        _require_aware(start, "start")
        if duration < _ZERO:
            raise ValueError(f"duration must not be negative, got {duration}")
        start = start.astimezone(UTC)
        if duration == _ZERO:
            return start

        remaining = duration
        for window_start, window_end in self._windows(start, idle_limit=_IDLE_LIMIT_DAYS):
            if window_end <= start:
                continue
            begin = max(window_start, start)
            available = window_end - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        raise AssertionError("unreachable: _windows never ends without raising")  # pragma: no cover

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time in ``[start, end)``; zero when ``end <= start``.

        Inverse of :meth:`add`: ``elapsed(s, add(s, d)) == d`` for every ``d >= 0``.
        """
        _require_aware(start, "start")
        _require_aware(end, "end")
        start = start.astimezone(UTC)
        end = end.astimezone(UTC)
        total = _ZERO
        if end <= start:
            return total
        for window_start, window_end in self._windows(start, idle_limit=None):
            if window_start >= end:
                break
            overlap = min(window_end, end) - max(window_start, start)
            if overlap > _ZERO:
                total += overlap
        return total

    # ----------------------------------------------------------------------------------------------
    # Internals

    def _window(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
        """The UTC window of local date ``day``, or ``None`` if it has no business time.

        Both ends are built from wall-clock times with zoneinfo (``fold=0``) and only then converted to
        UTC, so the window's length is its real length across any DST change.
        """
        if not self.is_working_day(day):
            return None
        window_start = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
        window_end = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
        if window_end <= window_start:  # collapsed inside a spring-forward gap
            return None
        return window_start, window_end

    def _windows(self, after: datetime, *, idle_limit: int | None) -> Iterator[tuple[datetime, datetime]]:
        """Non-empty UTC windows in increasing order, starting with the one for the local date before
        ``after``'s (so a window straddling a DST jump across midnight is never missed).

        Windows never overlap: each is clipped to start no earlier than the previous one ended, which
        only matters for pathological zone transitions. ``idle_limit`` bounds how many consecutive days
        without business time are tolerated; the whole walk is bounded by ``_HORIZON_DAYS``.
        """
        zone = self.zone
        day = after.astimezone(zone).date() - _ONE_DAY
        previous_end: datetime | None = None
        idle = 0
        for _ in range(_HORIZON_DAYS):
            window = self._window(day, zone)
            if window is not None and previous_end is not None and window[0] < previous_end:
                window = (previous_end, window[1]) if window[1] > previous_end else None
            if window is None:
                idle += 1
                if idle_limit is not None and idle > idle_limit:
                    raise ValueError(f"no business time in {idle_limit} consecutive days of this calendar")
            else:
                idle = 0
                previous_end = window[1]
                yield window
            try:
                day += _ONE_DAY
            except OverflowError:
                break
        raise ValueError(f"the business clock only looks {_HORIZON_DAYS} days ahead")


def _split_holiday_region(value: str | None) -> tuple[str | None, str | None]:
    """``"US"`` -> ``("US", None)``, ``"us-ca"`` -> ``("US", "CA")``, blank -> ``(None, None)``."""
    if value is None or not value.strip():
        return None, None
    country, _, subdivision = value.strip().upper().partition("-")
    return country, (subdivision or None)


# --------------------------------------------------------------------------------------------------
# Clock dispatch


def add_duration(
    start: datetime,
    duration: timedelta,
    *,
    clock: ClockKind,
    calendar: BusinessCalendar,
) -> datetime:
    """The due instant (UTC) ``duration`` after ``start`` on the given SLA clock.

    ``calendar`` counts all time (plain addition); ``business_hours`` counts only ``calendar``'s
    business time, see :meth:`BusinessCalendar.add`.
    """
    _require_aware(start, "start")
    if duration < _ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    if clock == "calendar":
        return start.astimezone(UTC) + duration
    if clock == "business_hours":
        return calendar.add(start, duration)
    raise ValueError(f"unknown clock {clock!r}; expected 'business_hours' or 'calendar'")


# --------------------------------------------------------------------------------------------------
# ISO 8601 durations

_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
_DURATION_RE = re.compile(
    rf"P(?:(?P<years>{_NUMBER})Y)?(?:(?P<months>{_NUMBER})M)?(?:(?P<weeks>{_NUMBER})W)?(?:(?P<days>{_NUMBER})D)?"
    rf"(?P<time>T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?"
)
_MICROSECONDS = {
    "weeks": 7 * 86_400_000_000,
    "days": 86_400_000_000,
    "hours": 3_600_000_000,
    "minutes": 60_000_000,
    "seconds": 1_000_000,
}


def parse_iso_duration(text: str) -> timedelta:
    """Parse a fixed-length ISO 8601 duration: ``PnW``, ``PnDTnHnMnS`` and any non-empty subset.

    - Days are 24 hours and weeks 7 days. Years and months (``P1Y``, ``P1M``; note ``PT1M`` is a minute)
      have no fixed length and raise ``ValueError``.
    - The last component present may carry a fraction, with ``.`` or ``,`` (``PT0.5S``, ``PT1.5H``);
      the result is rounded to the microsecond.
    - Weeks may be combined with the other components (``P1W2D``), as ISO 8601-2 allows.
    - Empty designators (``P``, ``PT``, ``P1DT``), signs, lower case, whitespace and anything else are
      rejected with ``ValueError``.
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    if match["years"] is not None or match["months"] is not None:
        raise ValueError(f"years and months are not fixed lengths; use weeks, days or hours: {text!r}")
    present = [(name, match[name]) for name in _MICROSECONDS if match[name] is not None]
    if not present:
        raise ValueError(f"ISO 8601 duration without any component: {text!r}")
    if match["time"] is not None and all(match[n] is None for n in ("hours", "minutes", "seconds")):
        raise ValueError(f"ISO 8601 duration with an empty time part: {text!r}")

    total = Decimal(0)
    for index, (name, raw) in enumerate(present):
        if index < len(present) - 1 and not raw.isdigit():
            raise ValueError(f"only the last component of a duration may have a fraction: {text!r}")
        try:
            total += Decimal(raw.replace(",", ".")) * _MICROSECONDS[name]
        except InvalidOperation as exc:  # pragma: no cover - the regex only lets numbers through
            raise ValueError(f"not an ISO 8601 duration: {text!r}") from exc
    microseconds = int(total.to_integral_value(rounding=ROUND_HALF_EVEN))
    try:
        return timedelta(microseconds=microseconds)
    except OverflowError as exc:
        raise ValueError(f"duration too large: {text!r}") from exc


def format_iso_duration(td: timedelta) -> str:
    """Canonical ISO 8601 form for display: ``PT4H``, ``P7D``, ``P1DT2H``, ``PT1H30M``, ``PT2.5S``, ``PT0S``.

    Days are not folded into weeks (a week policy reads ``P7D``); seconds keep only significant
    fraction digits. ``parse_iso_duration(format_iso_duration(td)) == td`` for every ``td >= 0``.
    """
    if td < _ZERO:
        raise ValueError(f"negative durations have no ISO 8601 form here: {td}")
    rest = td // timedelta(microseconds=1)
    days, rest = divmod(rest, _MICROSECONDS["days"])
    hours, rest = divmod(rest, _MICROSECONDS["hours"])
    minutes, rest = divmod(rest, _MICROSECONDS["minutes"])
    seconds, micros = divmod(rest, _MICROSECONDS["seconds"])

    date_part = f"{days}D" if days else ""
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if seconds or micros:
        fraction = f".{micros:06d}".rstrip("0") if micros else ""
        time_part += f"{seconds}{fraction}S"
    if not date_part and not time_part:
        return "PT0S"
    return f"P{date_part}" + (f"T{time_part}" if time_part else "")
