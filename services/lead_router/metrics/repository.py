"""Every metrics query. Aggregation happens in the database, with SQL both PostgreSQL and SQLite run alike:
counts as `SUM(CASE ...)`, nearest-rank percentiles with window functions over stored seconds, time windows
as UTC bounds computed in Python. Nothing here loads an offer or a lead row into Python.

Nearest rank: over `n` values sorted ascending with row numbers `rn`, the `p`-th percentile is the value at
the smallest `rn` with `rn ≥ p·n`, i.e. `MIN(value) WHERE rn·100 ≥ p·n` (integers only, so exact).

`offer_figures` has a PostgreSQL path giving the same figures faster (see `_offer_figures_postgres`):
one statement, per (partner, window) one range of the covering index `ix_lead_offers_partner_offered`,
`count(*) FILTER (...)` for the counts and `percentile_disc` for the percentiles. `percentile_disc(p)` is
the value at position `ceil(p·n)` of the sorted non-NULL values, the same position as `rn·100 ≥ p·n`
(checked for every n up to 50,000,000 in IEEE doubles, for p = 0.5 and 0.9).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, String, and_, case, func, literal_column, or_, select, true
from sqlalchemy import column as sql_column
from sqlalchemy import values as sql_values
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.lead.states import NO_DECISION, NURTURING, REJECT_REASONS, UNROUTABLE, WON
from shared.db import is_postgres
from shared.models import Lead, LeadOffer, Partner
from shared.models.base import UTCDateTime

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


def _offers_in(windows: Sequence[Window], partner_ids: Sequence[str] | None) -> Any:
    """The offers in the windows, each with its window's index `w` (the first window it lies in)."""
    where = [_in_windows(LeadOffer.offered_at, windows)]
    if partner_ids is not None:
        where.append(LeadOffer.partner_id.in_(partner_ids))
    return (select(_window_of(LeadOffer.offered_at, windows).label("w"), LeadOffer.partner_id, LeadOffer.status,
                   LeadOffer.reason, LeadOffer.first_touch_at, LeadOffer.accept_sla, LeadOffer.first_touch_sla,
                   LeadOffer.outcome, LeadOffer.amount, LeadOffer.accept_s, LeadOffer.first_touch_s)
            .where(*where).subquery())


def _disjoint(windows: Sequence[Window]) -> bool:
    """No offer time lies in two of the windows (the portable path counts an offer in the first only)."""
    spans = sorted((start, end) for start, end in windows if start < end)
    return all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False))


_KNOWN_REASONS = tuple(r for r in REJECT_REASONS if r != "other")


def _postgres_figures(windows: Sequence[Window], partner_ids: Sequence[str] | None) -> Select[Any]:
    """One row per (window, partner) with offers in the window: its counts, rejections per reason and
    percentiles. The partners × windows pairs drive a LATERAL aggregate over one range of
    `(partner_id, offered_at)` each, an index-only scan of `ix_lead_offers_partner_offered` (it includes
    every column read here), so nothing sorts the window's offers by partner; only each partner's own
    values are sorted for its percentiles (the percentiles over the same column share one sort)."""
    o = LeadOffer
    wins = sql_values(sql_column("w", Integer), sql_column("w_start", UTCDateTime()),
                      sql_column("w_end", UTCDateTime()), name="windows"
                      ).data([(i, start, end) for i, (start, end) in enumerate(windows)])
    if partner_ids is not None:
        partners: Any = sql_values(sql_column("partner_id", String), name="partner_ids").data(
            [(pid,) for pid in dict.fromkeys(partner_ids)])
    else:
        # The partners that have offers (not the `partners` table: the portable path reads only offers), by a
        # loose index scan: one descent of the index per partner instead of reading every offer.
        first = select(o.partner_id).order_by(o.partner_id).limit(1).scalar_subquery()
        ids = select(first.label("partner_id")).cte("offer_partners", recursive=True)
        after = (select(o.partner_id).where(o.partner_id > ids.c.partner_id).order_by(o.partner_id).limit(1)
                 .scalar_subquery())
        ids = ids.union_all(select(after).where(ids.c.partner_id.is_not(None)))
        partners = select(ids.c.partner_id).where(ids.c.partner_id.is_not(None)).subquery("offer_partners_found")
    status, reason, rejected = o.status, o.reason, o.status == "rejected"
    per_pair = (select(
        func.count().label("offered"),
        func.count().filter(status == "accepted").label("accepted"),
        func.count().filter(rejected).label("rejected"),
        func.count().filter(status == "recalled").label("recalled"),
        func.count().filter(status == "offered").label("pending"),
        func.count(o.first_touch_at).label("touched"),
        func.count().filter(or_(o.accept_sla.is_not(None), status == "recalled")).label("accept_sla_ended"),
        func.count().filter(and_(o.accept_sla == "met", status != "recalled")).label("accept_sla_met"),
        func.count(o.first_touch_sla).label("first_touch_sla_ended"),
        func.count().filter(o.first_touch_sla == "met").label("first_touch_sla_met"),
        func.count().filter(o.outcome == WON).label("won"),
        func.count().filter(o.outcome == "lost").label("lost"),
        func.count().filter(o.outcome == NO_DECISION).label("no_decision"),
        func.coalesce(func.sum(o.amount).filter(o.outcome == WON), 0.0).label("won_amount"),
        *[func.count().filter(and_(rejected, reason == r)).label(f"reason:{r}") for r in _KNOWN_REASONS],
        func.count().filter(and_(rejected, or_(reason.is_(None), reason == "other"))).label("reason:other"),
        # a stored reason outside the closed list (none expected): the caller asks for those by name
        func.count().filter(and_(rejected, reason.not_in(REJECT_REASONS))).label("unlisted_reasons"),
        func.percentile_disc(0.5).within_group(o.accept_s).label("median_time_to_accept_s"),
        func.percentile_disc(0.9).within_group(o.accept_s).label("p90_time_to_accept_s"),
        func.percentile_disc(0.5).within_group(o.first_touch_s).label("median_time_to_first_touch_s"),
    ).where(o.partner_id == partners.c.partner_id, o.offered_at >= wins.c.w_start, o.offered_at < wins.c.w_end)
        .having(func.count() > 0).lateral("figures"))
    return (select(wins.c.w, partners.c.partner_id, per_pair)
            .select_from(partners.join(wins, true()).join(per_pair, true())))


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
        """Per (window, partner): the figures of the offers whose `offered_at` lies in the window; a key for
        each (window, partner) with at least one offer in the window."""
        if windows and _disjoint(windows) and is_postgres(self.session):
            return await self._offer_figures_postgres(windows, partner_ids=partner_ids)
        return await self._offer_figures_portable(windows, partner_ids=partner_ids)

    async def _offer_figures_postgres(self, windows: Sequence[Window], *, partner_ids: Sequence[str] | None = None
                                      ) -> dict[Key, OfferFigures]:
        """`offer_figures` in one PostgreSQL statement (`_postgres_figures`), for disjoint windows. JIT is
        off for it: the statement's estimated cost passes `jit_above_cost` over long windows, and compiling
        costs more than it saves on a per-partner plan. `set_config(..., true)` is `SET LOCAL`; the previous
        value is put back right after, so the rest of the caller's transaction runs as before."""
        if partner_ids is not None and not partner_ids:
            return {}
        jit = (await self.session.execute(select(func.current_setting("jit"),
                                                 func.set_config("jit", "off", True)))).scalar_one()
        rows = (await self.session.execute(_postgres_figures(windows, partner_ids))).mappings().all()
        await self.session.execute(select(func.set_config("jit", jit, True)))
        out: dict[Key, OfferFigures] = {}
        for row in rows:
            figures = out[(int(row["w"]), row["partner_id"])] = OfferFigures(
                counts={name: int(row[name]) for name in COUNTS}, won_amount=round(float(row["won_amount"]), 2),
                rejected_by_reason={r: int(row[f"reason:{r}"]) for r in REJECT_REASONS if row[f"reason:{r}"]})
            for name in ("median_time_to_accept_s", "p90_time_to_accept_s", "median_time_to_first_touch_s"):
                setattr(figures, name, None if row[name] is None else float(row[name]))
        if any(row["unlisted_reasons"] for row in rows):
            for figures in out.values():
                figures.rejected_by_reason = {}
            o = _offers_in(windows, partner_ids)
            await self._rejected_by_reason(out, o, (o.c.w, o.c.partner_id))
        return out

    async def _offer_figures_portable(self, windows: Sequence[Window], *, partner_ids: Sequence[str] | None = None
                                      ) -> dict[Key, OfferFigures]:
        """`offer_figures` in SQL any database runs: four statements."""
        o = _offers_in(windows, partner_ids)
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
        await self._rejected_by_reason(out, o, keys)
        for column, shares, names in ((o.c.accept_s, (50, 90), ("median_time_to_accept_s", "p90_time_to_accept_s")),
                                      (o.c.first_touch_s, (50,), ("median_time_to_first_touch_s",))):
            for key, values in (await self._nearest_rank(column, shares, keys)).items():
                for name, value in zip(names, values, strict=True):
                    setattr(out[key], name, value)
        return dict(out)

    async def _rejected_by_reason(self, out: dict[Key, OfferFigures], o: Any, keys: Sequence[Any]) -> None:
        reasons: Select[Any] = (select(*keys, o.c.reason, func.count()).where(o.c.status == "rejected")
                                .group_by(*keys, o.c.reason))
        for wi, pid, reason, n in (await self.session.execute(reasons)).all():
            by_reason = out[(int(wi), pid)].rejected_by_reason
            by_reason[reason or "other"] = by_reason.get(reason or "other", 0) + int(n)

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
