"""Every metrics query. Aggregation happens in the database, with SQL both PostgreSQL and SQLite run alike:
counts as `SUM(CASE ...)`, nearest-rank percentiles with window functions over stored seconds, time windows
as UTC bounds computed in Python. Nothing here loads an offer or a lead row into Python.

Nearest rank: over `n` values sorted ascending with row numbers `rn`, the `p`-th percentile is the value at
the smallest `rn` with `rn ≥ p·n`, i.e. `MIN(value) WHERE rn·100 ≥ p·n` (integers only, so exact).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.lead.states import NO_DECISION, NURTURING, UNROUTABLE, WON
from shared.models import Lead, LeadOffer, Partner

Window = tuple[datetime, datetime]  # [start, end), UTC
Key = tuple[int, str]  # (window index, partner id)

COUNTS = ("offered", "accepted", "rejected", "recalled", "pending", "touched", "accept_sla_ended", "accept_sla_met",
          "first_touch_sla_ended", "first_touch_sla_met", "won", "lost", "no_decision")


@dataclass
class OfferFigures:
    """What one partner's offers in one window came to: raw counts, sums and percentiles."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    won_amount: float = 0.0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    median_time_to_accept_s: float | None = None
    p90_time_to_accept_s: float | None = None
    median_time_to_first_touch_s: float | None = None


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _window_of(column: Any, windows: Sequence[Window]) -> ColumnElement[Any]:
    if len(windows) == 1:
        return literal_column("0")
    return case(*[(and_(column >= start, column < end), i) for i, (start, end) in enumerate(windows)])


def _in_windows(column: Any, windows: Sequence[Window]) -> ColumnElement[bool]:
    return or_(*[and_(column >= start, column < end) for start, end in windows])


class MetricsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def partners(self, partner_ids: Sequence[str] | None = None) -> list[Partner]:
        query = select(Partner).order_by(Partner.partner_id)
        if partner_ids is not None:
            query = query.where(Partner.partner_id.in_(partner_ids))
        return list((await self.session.scalars(query)).all())

    async def offer_figures(self, windows: Sequence[Window], *, partner_ids: Sequence[str] | None = None
                            ) -> dict[Key, OfferFigures]:
        """Per (window, partner): the figures of the offers whose `offered_at` lies in the window."""
        where = [_in_windows(LeadOffer.offered_at, windows)]
        if partner_ids is not None:
            where.append(LeadOffer.partner_id.in_(partner_ids))
        o = (select(_window_of(LeadOffer.offered_at, windows).label("w"), LeadOffer.partner_id, LeadOffer.status,
                    LeadOffer.reason, LeadOffer.first_touch_at, LeadOffer.accept_sla, LeadOffer.first_touch_sla,
                    LeadOffer.outcome, LeadOffer.amount, LeadOffer.accept_s, LeadOffer.first_touch_s)
             .where(*where).subquery())
        keys = (o.c.w, o.c.partner_id)
        status = o.c.status
        counts = select(
            *keys,
            func.count().label("offered"),
            _count(status == "accepted").label("accepted"),
            _count(status == "rejected").label("rejected"),
            _count(status == "recalled").label("recalled"),
            _count(status == "offered").label("pending"),
            _count(o.c.first_touch_at.is_not(None)).label("touched"),
            _count(or_(o.c.accept_sla.is_not(None), status == "recalled")).label("accept_sla_ended"),
            _count(and_(o.c.accept_sla == "met", status != "recalled")).label("accept_sla_met"),
            _count(o.c.first_touch_sla.is_not(None)).label("first_touch_sla_ended"),
            _count(o.c.first_touch_sla == "met").label("first_touch_sla_met"),
            _count(o.c.outcome == WON).label("won"),
            _count(o.c.outcome == "lost").label("lost"),
            _count(o.c.outcome == NO_DECISION).label("no_decision"),
            func.coalesce(func.sum(case((o.c.outcome == WON, func.coalesce(o.c.amount, 0.0)), else_=0.0)), 0.0)
            .label("won_amount"),
        ).group_by(*keys)
        out: dict[Key, OfferFigures] = defaultdict(OfferFigures)
        for row in (await self.session.execute(counts)).mappings():
            figures = out[(int(row["w"]), row["partner_id"])]
            figures.counts = {name: int(row[name]) for name in COUNTS}
            figures.won_amount = round(float(row["won_amount"]), 2)
        reasons = select(*keys, o.c.reason, func.count()).where(status == "rejected").group_by(*keys, o.c.reason)
        for wi, pid, reason, n in (await self.session.execute(reasons)).all():
            by_reason = out[(int(wi), pid)].rejected_by_reason
            by_reason[reason or "other"] = by_reason.get(reason or "other", 0) + int(n)
        for column, shares, names in ((o.c.accept_s, (50, 90), ("median_time_to_accept_s", "p90_time_to_accept_s")),
                                      (o.c.first_touch_s, (50,), ("median_time_to_first_touch_s",))):
            for key, values in (await self._nearest_rank(column, shares, keys)).items():
                for name, value in zip(names, values, strict=True):
                    setattr(out[key], name, value)
        return dict(out)

    async def _nearest_rank(self, column: Any, shares: Sequence[int], keys: Sequence[Any]
                            ) -> dict[Key, list[float | None]]:
        ranked = select(*keys, column.label("v"),
                        func.row_number().over(partition_by=keys, order_by=column).label("rn"),
                        func.count().over(partition_by=keys).label("n")
                        ).where(column.is_not(None)).subquery()
        query = select(ranked.c.w, ranked.c.partner_id, *[
            func.min(case((ranked.c.rn * 100 >= share * ranked.c.n, ranked.c.v))) for share in shares
        ]).group_by(ranked.c.w, ranked.c.partner_id)
        return {(int(row[0]), row[1]): [None if v is None else float(v) for v in row[2:]]
                for row in (await self.session.execute(query)).all()}

    async def source_figures(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Per (source, campaign): the leads received in `[start, end)` and what became of them."""
        in_range = and_(Lead.created_at >= start, Lead.created_at < end)
        o = LeadOffer
        per_lead = (select(o.lead_id, func.count().label("offers"),
                           _count(o.status == "accepted").label("accepted"),
                           _count(o.status == "rejected").label("rejected"))
                    .join(Lead, Lead.lead_id == o.lead_id).where(in_range).group_by(o.lead_id).subquery())
        query = (select(
            Lead.source, Lead.campaign,
            func.count().label("leads"),
            _count(Lead.status == NURTURING).label("nurturing"),
            _count(per_lead.c.offers > 0).label("routed"),
            _count(Lead.status == UNROUTABLE).label("unroutable"),
            _count(per_lead.c.accepted > 0).label("accepted"),
            func.coalesce(func.sum(per_lead.c.rejected), 0).label("rejected"),
            _count(Lead.status == WON).label("won"),
            _count(Lead.status == "lost").label("lost"),
            _count(Lead.status == NO_DECISION).label("no_decision"))
            .outerjoin(per_lead, per_lead.c.lead_id == Lead.lead_id).where(in_range)
            .group_by(Lead.source, Lead.campaign))
        rows = [dict(row) for row in (await self.session.execute(query)).mappings()]
        reasons = (select(Lead.source, Lead.campaign, o.reason, func.count())
                   .join(Lead, Lead.lead_id == o.lead_id).where(in_range, o.status == "rejected")
                   .group_by(Lead.source, Lead.campaign, o.reason))
        by_reason: dict[tuple[str, str | None], dict[str, int]] = defaultdict(dict)
        for source, campaign, reason, n in (await self.session.execute(reasons)).all():
            counts = by_reason[(source, campaign)]
            counts[reason or "other"] = counts.get(reason or "other", 0) + int(n)
        for row in rows:
            for name in ("leads", "nurturing", "routed", "unroutable", "accepted", "rejected", "won", "lost",
                         "no_decision"):
                row[name] = int(row[name])
            row["rejected_by_reason"] = by_reason.get((row["source"], row["campaign"]), {})
        return rows
