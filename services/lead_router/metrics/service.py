"""Partner and source metrics, per window and per period, with the shrunk score and rank.

The figures mean exactly what API.md says (cohorts by offer time for partners, by receipt time for
sources); the repository aggregates them in the database, this module turns counts into rates, scores,
ranks, objectives' attainment and tier medians.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.metrics.periods import (
    TINY,
    Period,
    PeriodCalendar,
    month_calendar,
    mop_calendar,
    quarter_calendar,
)
from services.lead_router.metrics.repository import MetricsRepository, OfferFigures, Window
from services.lead_router.metrics.schemas import (
    ObjectiveRead,
    PartnerFigures,
    PeriodFigures,
    ScorecardPeriod,
    ScoreParts,
    SourceFigures,
    TierMedian,
)
from services.lead_router.metrics.score import Record, Scored, Tally, pooled, ranks, score_all
from shared.config import Settings
from shared.errors import NotFound, ValidationFailed
from shared.models import Partner, utcnow

T = TypeVar("T")
DEFAULT_SPAN = timedelta(days=90)
# The instants `from`/`to` may name: far enough inside datetime's range that a default window or a run of
# periods around them never leaves it (an OverflowError would be a 500).
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
DEFAULT_PERIODS = 4
MEDIAN_MIN_PARTNERS = 3
MEDIAN_RATES = ("acceptance_rate", "accept_sla_met_rate", "first_touch_sla_met_rate", "win_rate")


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def record(tier: str, figures: OfferFigures) -> Record:
    c = figures.counts
    return Record(tier, {
        "acceptance": Tally(c["accepted"], c["accepted"] + c["rejected"] + c["recalled"]),
        "first_touch_sla": Tally(c["first_touch_sla_met"], c["first_touch_sla_ended"]),
        "win": Tally(c["won"], c["won"] + c["lost"] + c["no_decision"]),
    })


def _figures(partner: Partner, figures: OfferFigures, scored: Scored, rank: int) -> dict[str, object]:
    c = figures.counts
    return dict(
        partner_id=partner.partner_id, name=partner.name, rank=rank, score=scored.score,
        score_parts=ScoreParts(**scored.parts), tier=partner.tier,
        offered=c["offered"], accepted=c["accepted"], rejected=c["rejected"], recalled=c["recalled"],
        pending=c["pending"], touched=c["touched"], rejected_by_reason=dict(sorted(figures.rejected_by_reason.items())),
        acceptance_rate=_rate(c["accepted"], c["accepted"] + c["rejected"] + c["recalled"]),
        median_time_to_accept_s=figures.median_time_to_accept_s, p90_time_to_accept_s=figures.p90_time_to_accept_s,
        median_time_to_first_touch_s=figures.median_time_to_first_touch_s,
        accept_sla_met_rate=_rate(c["accept_sla_met"], c["accept_sla_ended"]),
        first_touch_sla_met_rate=_rate(c["first_touch_sla_met"], c["first_touch_sla_ended"]),
        won=c["won"], lost=c["lost"], no_decision=c["no_decision"],
        win_rate=_rate(c["won"], c["won"] + c["lost"] + c["no_decision"]), won_amount=figures.won_amount)


async def _ranked(session: AsyncSession, settings: Settings, windows: Sequence[Window],
                  partners: Sequence[Partner]) -> list[list[PartnerFigures]]:
    """Per window, every partner's figures, ranked best first (one set of queries for all windows)."""
    raw = await MetricsRepository(session).offer_figures(windows)
    out = []
    for wi in range(len(windows)):
        figures = {p.partner_id: raw.get((wi, p.partner_id)) or OfferFigures() for p in partners}
        scored = score_all({p.partner_id: record(p.tier, figures[p.partner_id]) for p in partners},
                           settings.score_prior_strength)
        rank = ranks(scored)
        items = [PartnerFigures(**_figures(p, figures[p.partner_id], scored[p.partner_id], rank[p.partner_id]))
                 for p in partners]
        out.append(sorted(items, key=lambda item: item.rank))
    return out


# --- the time a request asks about ---

def parse_instant(value: str | None, name: str, settings: Settings) -> datetime | None:
    """RFC 3339 with an offset, or a date (midnight in the vendor's time zone); 422 for anything else."""
    if value is None:
        return None
    at: datetime | None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            local = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(settings.vendor_timezone))
        else:
            local = datetime.fromisoformat(value)
        at = local.astimezone(UTC) if local.tzinfo is not None else None
    except (ValueError, OverflowError):  # OverflowError: a local time at the very edge of the calendar
        at = None
    if at is None:
        raise ValidationFailed(f"{name} must be an RFC 3339 time with an offset or a date (YYYY-MM-DD).", errors=[
            {"field": name, "message": "an RFC 3339 time with offset, or YYYY-MM-DD", "type": "value_error"}])
    if not EARLIEST <= at < LATEST:  # windows and periods reach around it; keep them within the calendar
        raise ValidationFailed(f"{name} must lie between {EARLIEST.year} and {LATEST.year}.", errors=[
            {"field": name, "message": f"between {EARLIEST.date()} and {LATEST.date()}", "type": "value_error"}])
    return at


def window(start: datetime | None, end: datetime | None, *, now: datetime | None = None) -> Window:
    """`[from, to)`, by default the last 90 days; 422 unless from is before to."""
    end = end or now or utcnow()
    start = start or end - DEFAULT_SPAN
    _ordered(start, end)
    return start, end


def _ordered(start: datetime, end: datetime) -> None:
    if start >= end:
        raise ValidationFailed("from must be before to.", errors=[
            {"field": "from", "message": "must be before to", "type": "value_error"}])


def calendar(kind: str, partner: Partner, settings: Settings) -> PeriodCalendar:
    if kind == "month":
        return month_calendar(settings.vendor_timezone)
    if kind == "vendor_quarter":
        return quarter_calendar(settings.fiscal_year_start_month, settings.vendor_timezone)
    if kind == "partner_quarter":
        return quarter_calendar(partner.fiscal_year_start_month, partner.timezone)
    months = (partner.operating_periods or {}).get("start_months")
    return mop_calendar(months, partner.fiscal_year_start_month, partner.timezone)


def periods(cal: PeriodCalendar, start: datetime | None, end: datetime | None, now: datetime) -> list[Period]:
    """With from (and to, default now): the periods overlapping them, cut to them. Without from: the last four
    periods up to to (default now)."""
    if start is not None:
        end = end or now
        _ordered(start, end)
        return cal.between(start, end)
    if end is None:
        return cal.last(DEFAULT_PERIODS, now)
    last = cal.last(DEFAULT_PERIODS, end - TINY)
    return last[:-1] + [Period(last[-1].label, last[-1].start, end)]


# --- the endpoints' work ---

async def partner_ranking(session: AsyncSession, settings: Settings, win: Window) -> list[PartnerFigures]:
    partners = await MetricsRepository(session).partners()
    return (await _ranked(session, settings, [win], partners))[0]


async def _partner(session: AsyncSession, partner_id: str) -> Partner:
    found = await MetricsRepository(session).partners([partner_id]) if "\x00" not in partner_id else []
    if not found:
        raise NotFound(f"No partner {partner_id!r}.")
    return found[0]


def _objectives(partner: Partner, kind: str, item: PartnerFigures) -> list[ObjectiveRead]:
    out = []
    for objective in partner.objectives or []:
        if objective.get("per") != kind:
            continue
        target = float(objective["target"])
        actual = float(getattr(item, objective["metric"]))
        out.append(ObjectiveRead(metric=objective["metric"], per=kind, target=target, actual=actual,
                                 attainment=actual / target))
    return out


async def partner_periods(session: AsyncSession, settings: Settings, partner_id: str, kind: str, *,
                          start: datetime | None, end: datetime | None) -> list[PeriodFigures]:
    items = await _periods(session, settings, await _partner(session, partner_id), kind, start=start, end=end)
    return [item for item, _ in items]


async def _periods(session: AsyncSession, settings: Settings, partner: Partner, kind: str, *,
                   start: datetime | None, end: datetime | None
                   ) -> list[tuple[PeriodFigures, list[PartnerFigures]]]:
    """The partner's figures per period (ranked among every partner over that period), with everyone's."""
    chosen = periods(calendar(kind, partner, settings), start, end, utcnow())
    partners = await MetricsRepository(session).partners()
    ranked = await _ranked(session, settings, [(p.start, p.end) for p in chosen], partners)
    out = []
    for period, everyone in zip(chosen, ranked, strict=True):
        own = next(item for item in everyone if item.partner_id == partner.partner_id)
        item = PeriodFigures(**own.model_dump(), period=period.label, from_=period.start, to=period.end,
                             objectives=_objectives(partner, kind, own))
        out.append((item, everyone))
    return out


def nearest_rank_median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[(len(ordered) + 1) // 2 - 1]  # the smallest value with at least half at or below it


def tier_median(tier: str, everyone: Sequence[PartnerFigures]) -> TierMedian:
    peers = [item for item in everyone if item.tier == tier]
    medians: dict[str, float | None] = {}
    for name in MEDIAN_RATES:
        values = [v for v in (getattr(item, name) for item in peers) if v is not None]
        medians[name] = nearest_rank_median(values) if len(values) >= MEDIAN_MIN_PARTNERS else None
    return TierMedian(partners=len(peers), **medians)


async def scorecard(session: AsyncSession, settings: Settings, partner: Partner, kind: str
                    ) -> list[ScorecardPeriod]:
    """The calling partner's own figures per period, its objectives, and its tier's medians: nothing that
    names or shows another partner."""
    items = await _periods(session, settings, partner, kind, start=None, end=None)
    return [ScorecardPeriod(**item.model_dump(), tier_median=tier_median(partner.tier, everyone))
            for item, everyone in items]


async def source_ranking(session: AsyncSession, win: Window) -> list[SourceFigures]:
    rows = await MetricsRepository(session).source_figures(*win)
    items = [SourceFigures(**row, reject_rate=_rate(row["rejected"], row["accepted"] + row["rejected"]),
                           win_rate=_rate(row["won"], row["won"] + row["lost"] + row["no_decision"]))
             for row in rows]
    return sorted(items, key=lambda s: (-s.leads, s.source, s.campaign or ""))


# --- what the `performance` routing strategy scores partners by ---

@dataclass(frozen=True)
class Scorecards:
    records: dict[str, Record]
    priors: dict[str, dict[str, float]]  # per tier, per part
    k: float


_cache: dict[str, tuple[float, Scorecards]] = {}


async def scorecards(session: AsyncSession, settings: Settings) -> Scorecards:
    """Every partner's tallies over the last `performance_window_days`, with the tier priors; reused for
    `performance_refresh_s` (per database), since routing asks for them on every batch."""
    cached = _cache.get(settings.database_url)
    if cached is not None and time.monotonic() - cached[0] < settings.performance_refresh_s:
        return cached[1]
    end = utcnow()
    win = (end - timedelta(days=settings.performance_window_days), end)
    repo = MetricsRepository(session)
    partners = await repo.partners()
    raw = await repo.offer_figures([win])
    records = {p.partner_id: record(p.tier, raw.get((0, p.partner_id)) or OfferFigures()) for p in partners}
    cards = Scorecards(records, pooled(records), settings.score_prior_strength)
    _cache[settings.database_url] = (time.monotonic(), cards)
    return cards
