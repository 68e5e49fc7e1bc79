"""Metrics (admin) and the partner's own scorecard (partner key). What every figure means: API.md, Metrics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from services.lead_router.deps import AdminDep, PartnerDep, SessionDep, SettingsDep
from services.lead_router.metrics import service
from services.lead_router.metrics.schemas import PartnerFigures, PeriodFigures, ScorecardPeriod, SourceFigures
from shared.errors import problem_responses
from shared.pagination import CursorQuery, LimitQuery, Page, decode_cursor, encode_cursor

admin_router = APIRouter(prefix="/v1/metrics", tags=["metrics (admin)"], dependencies=[AdminDep],
                         responses=problem_responses(401, 422))
partner_router = APIRouter(prefix="/v1/partner", tags=["partner"], responses=problem_responses(401, 422))

FromQuery = Annotated[str | None, Query(alias="from", max_length=64,
                                        description="RFC 3339 with offset, or YYYY-MM-DD (vendor midnight).")]
ToQuery = Annotated[str | None, Query(alias="to", max_length=64, description="Exclusive end; as `from`.")]
PeriodKind = Literal["month", "vendor_quarter", "partner_quarter", "mop"]


def _slice(items: list[service.T], limit: int, cursor: str | None) -> Page[service.T]:
    values = decode_cursor(cursor, 1, kinds=(int,))
    offset = values[0] if values else 0
    rest = items[offset:offset + limit]
    more = offset + limit < len(items)
    return Page(items=rest, next_cursor=encode_cursor([offset + limit]) if more else None)


@admin_router.get("/partners", response_model=Page[PartnerFigures])
async def partner_metrics(session: SessionDep, settings: SettingsDep, from_: FromQuery = None, to: ToQuery = None,
                          limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[PartnerFigures]:
    """Every partner's figures over the offers made to it in `[from, to)` (default: the last 90 days),
    ranked best first by the shrunk score."""
    win = service.window(service.parse_instant(from_, "from", settings), service.parse_instant(to, "to", settings))
    return _slice(await service.partner_ranking(session, settings, win), limit, cursor)


@admin_router.get("/partners/{partner_id}", response_model=Page[PeriodFigures], response_model_by_alias=True,
                  responses=problem_responses(404))
async def partner_period_metrics(partner_id: str, session: SessionDep, settings: SettingsDep,
                                 period: PeriodKind = "month", from_: FromQuery = None,
                                 to: ToQuery = None) -> Page[PeriodFigures]:
    """One partner's figures per period, oldest first: `month` and `vendor_quarter` on the vendor's calendar,
    `partner_quarter` and `mop` (its Mutual Operating Periods) on the partner's, each with the partner's
    objectives for that kind of period and their attainment. Without `from`/`to`: the last four periods."""
    items = await service.partner_periods(
        session, settings, partner_id, period, start=service.parse_instant(from_, "from", settings),
        end=service.parse_instant(to, "to", settings))
    return Page(items=items)


@admin_router.get("/sources", response_model=Page[SourceFigures])
async def source_metrics(session: SessionDep, settings: SettingsDep, from_: FromQuery = None, to: ToQuery = None,
                         limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[SourceFigures]:
    """Per source and campaign, the leads received in `[from, to)` (default: the last 90 days) and what became
    of them, most leads first: how many partners rejected, and why."""
    win = service.window(service.parse_instant(from_, "from", settings), service.parse_instant(to, "to", settings))
    return _slice(await service.source_ranking(session, win), limit, cursor)


@partner_router.get("/scorecard", response_model=Page[ScorecardPeriod], response_model_by_alias=True)
async def own_scorecard(partner: PartnerDep, session: SessionDep, settings: SettingsDep,
                        period: PeriodKind = "partner_quarter") -> Page[ScorecardPeriod]:
    """The calling partner's own figures for its last four periods, with its objectives and its tier's
    medians (never another partner's id or figures)."""
    return Page(items=await service.scorecard(session, settings, partner, period))
