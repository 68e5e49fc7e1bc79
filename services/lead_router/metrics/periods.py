"""Reporting periods: calendar months, fiscal quarters and Mutual Operating Periods, in a time zone.

Every kind of period is the same thing: a set of months at which periods begin, a time zone in which they
begin at local midnight on the 1st, and a way to name them. A month starts every month; a fiscal quarter
every third month from the fiscal year's first; a Mutual Operating Period at each month agreed with the
partner. Boundaries are computed here, in Python, as UTC instants, so the database only ever compares
timestamps and every database puts an offer in the same period.

Labels: `2026-11` (a month), `FY2027-Q3` (a fiscal quarter; the fiscal year is named by the calendar year
in which it ends), `MOP-2026-07` (a Mutual Operating Period, by the month it starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from shared.errors import ValidationFailed

Style = Literal["month", "fiscal", "mop"]
MAX_PERIODS = 120  # one request asks for at most this many periods
TINY = timedelta(microseconds=1)


@dataclass(frozen=True)
class Period:
    label: str
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive


@dataclass(frozen=True)
class PeriodCalendar:
    start_months: tuple[int, ...]  # sorted, distinct, 1-12
    zone: str
    style: Style
    fiscal_start: int = 1  # for `fiscal` labels

    def label(self, year: int, month: int) -> str:
        if self.style == "month":
            return f"{year}-{month:02d}"
        if self.style == "mop":
            return f"MOP-{year}-{month:02d}"
        s = self.fiscal_start
        fiscal_year = year + 1 if s != 1 and month >= s else year
        return f"FY{fiscal_year}-Q{(month - s) % 12 // 3 + 1}"

    def _instant(self, year: int, month: int) -> datetime:
        return datetime(year, month, 1, tzinfo=ZoneInfo(self.zone)).astimezone(UTC)

    def _next(self, year: int, month: int) -> tuple[int, int]:
        later = [m for m in self.start_months if m > month]
        return (year, later[0]) if later else (year + 1, self.start_months[0])

    def _period(self, year: int, month: int) -> Period:
        ny, nm = self._next(year, month)
        return Period(self.label(year, month), self._instant(year, month), self._instant(ny, nm))

    def containing(self, at: datetime) -> Period:
        local = at.astimezone(ZoneInfo(self.zone))
        earlier = [m for m in self.start_months if m <= local.month]
        year, month = (local.year, earlier[-1]) if earlier else (local.year - 1, self.start_months[-1])
        period = self._period(year, month)
        if at < period.start:  # a local midnight that is not 00:00 (a DST jump at midnight): step back
            return self.containing(period.start - TINY)
        return period

    def between(self, start: datetime, end: datetime) -> list[Period]:
        """The periods overlapping `[start, end)`, oldest first, each cut to that range."""
        out: list[Period] = []
        period = self.containing(start)
        while period.start < end:
            if len(out) == MAX_PERIODS:
                raise ValidationFailed(f"At most {MAX_PERIODS} periods per request; narrow from/to.", errors=[
                    {"field": "from", "message": f"spans more than {MAX_PERIODS} periods", "type": "value_error"}])
            out.append(Period(period.label, max(period.start, start), min(period.end, end)))
            period = self.containing(period.end)
        return out

    def last(self, count: int, now: datetime) -> list[Period]:
        """The period containing `now` and the `count - 1` before it, oldest first."""
        periods = [self.containing(now)]
        while len(periods) < count:
            periods.append(self.containing(periods[-1].start - TINY))
        return periods[::-1]


def quarters(fiscal_start: int) -> tuple[int, ...]:
    return tuple(sorted((fiscal_start - 1 + 3 * i) % 12 + 1 for i in range(4)))


def month_calendar(zone: str) -> PeriodCalendar:
    return PeriodCalendar(tuple(range(1, 13)), zone, "month")


def quarter_calendar(fiscal_start: int, zone: str) -> PeriodCalendar:
    return PeriodCalendar(quarters(fiscal_start), zone, "fiscal", fiscal_start)


def mop_calendar(start_months: Sequence[int] | None, fiscal_start: int, zone: str) -> PeriodCalendar:
    """The partner's Mutual Operating Periods; without agreed months, its fiscal quarters."""
    months = tuple(sorted(set(start_months))) if start_months else quarters(fiscal_start)
    return PeriodCalendar(months, zone, "mop")
