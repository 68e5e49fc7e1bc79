"""Every query on the monitor's clock, alert and partner-projection tables.

A consumer batch reads what its events need up front, in four statements (`SlaRepository.prefetch`): the
partners' calendars, the policies, and the open clocks of the batch's leads with their unresolved alerts,
locked. The reads below answer from that `BatchView` (kept in the session's `info`) for what it holds, and
go to the database otherwise; clocks and partners the batch creates are added to it. So a fetch of a
hundred `lead.routed` costs a handful of statements instead of several per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import SlaAlert, SlaClock, SlaPartner, SlaPolicy
from shared.pagination import newest_first

UNRESOLVED = ("open", "acknowledged")
VIEW_KEY = "sla_batch_view"


@dataclass
class BatchView:
    """What a consumer batch read up front; every entry is authoritative for its key until the batch
    commits (clocks and alerts are locked; policies and calendars are read once per batch, as of its start)."""

    partners: dict[str, SlaPartner | None] = field(default_factory=dict)
    policies: dict[str, SlaPolicy | None] = field(default_factory=dict)
    clocks: dict[str, list[SlaClock]] = field(default_factory=dict)  # lead id -> its open clocks (and new ones)
    alerts: dict[str, list[SlaAlert]] = field(default_factory=dict)  # clock id -> its unresolved alerts

    def add_clock(self, clock: SlaClock) -> None:
        if clock.lead_id in self.clocks:
            self.clocks[clock.lead_id].append(clock)
            self.alerts[clock.clock_id] = []

    def add_partner(self, partner: SlaPartner) -> None:
        self.partners[partner.partner_id] = partner


def batch_view(session: AsyncSession) -> BatchView | None:
    view: BatchView | None = session.info.get(VIEW_KEY)
    return view


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Armed, open and due at `now`: an index range on (armed, due_at)."""
    return SlaClock.armed.is_(True), SlaClock.due_at <= now, SlaClock.status == "open"


class SlaRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def prefetch(self, lead_ids: Iterable[str], partner_ids: Iterable[str], policy_names: Iterable[str]
                       ) -> BatchView:
        """Read, for the rest of this transaction, what a batch of events about `lead_ids` needs: their open
        clocks and those clocks' unresolved alerts (locked, in clock id order), and the calendars and
        policies of `partner_ids` / `policy_names`."""
        view = BatchView()
        leads, partners, names = sorted(set(lead_ids)), sorted(set(partner_ids)), sorted(set(policy_names))
        if partners:
            found = await self.partners(partners)
            view.partners = {pid: found.get(pid) for pid in partners}
        if names:
            rows = await self.session.scalars(select(SlaPolicy).where(SlaPolicy.name.in_(names)))
            by_name = {row.name: row for row in rows.all()}
            view.policies = {name: by_name.get(name) for name in names}
        if leads:
            view.clocks = {lead_id: [] for lead_id in leads}
            clocks = (await self.session.scalars(
                select(SlaClock).where(SlaClock.lead_id.in_(leads), SlaClock.status == "open")
                .order_by(SlaClock.clock_id).with_for_update())).all()
            for clock in sorted(clocks, key=lambda c: c.started_at):
                view.clocks[clock.lead_id].append(clock)
                view.alerts[clock.clock_id] = []
            if clocks:
                alerts = await self.session.scalars(
                    select(SlaAlert).where(SlaAlert.clock_id.in_([c.clock_id for c in clocks]),
                                           SlaAlert.status.in_(UNRESOLVED))
                    .order_by(SlaAlert.alert_id).with_for_update())
                for alert in sorted(alerts.all(), key=lambda a: a.period):
                    view.alerts[alert.clock_id].append(alert)
        self.session.info[VIEW_KEY] = view
        return view

    async def partner(self, partner_id: str | None) -> SlaPartner | None:
        if not partner_id:
            return None
        view = batch_view(self.session)
        if view is not None and partner_id in view.partners:
            return view.partners[partner_id]
        return await self.session.get(SlaPartner, partner_id)

    async def open_clocks(self, lead_id: str, kinds: Sequence[str]) -> list[SlaClock]:
        view = batch_view(self.session)
        if view is not None and lead_id in view.clocks:
            return sorted((c for c in view.clocks[lead_id] if c.kind in kinds and c.status == "open"),
                          key=lambda c: c.started_at)
        query = (select(SlaClock).where(SlaClock.lead_id == lead_id, SlaClock.kind.in_(kinds),
                                        SlaClock.status == "open")
                 .order_by(SlaClock.started_at).with_for_update())
        return list((await self.session.scalars(query)).all())

    async def clock(self, clock_id: str, *, lock: bool = False) -> SlaClock | None:
        query = select(SlaClock).where(SlaClock.clock_id == clock_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def lock_due(self, clock_ids: Sequence[str], now: datetime) -> list[SlaClock]:
        """The clocks of `clock_ids` still open, armed and due at `now`, locked, earliest first. Rows another
        transaction holds are skipped (SKIP LOCKED on PostgreSQL), so monitor instances never wait on each
        other and never deadlock over a batch; `still_due` tells which of the skipped ones are worth a retry."""
        query = (select(SlaClock).where(SlaClock.clock_id.in_(clock_ids), *_due(now))
                 .order_by(SlaClock.due_at, SlaClock.clock_id).with_for_update(skip_locked=True))
        return list((await self.session.scalars(query)).all())

    async def still_due(self, clock_ids: Sequence[str], now: datetime) -> list[str]:
        """Which of `clock_ids` are due at `now` as last committed (no lock)."""
        rows = await self.session.scalars(select(SlaClock.clock_id).where(SlaClock.clock_id.in_(clock_ids),
                                                                          *_due(now)))
        return list(rows.all())

    async def partners(self, partner_ids: Iterable[str]) -> dict[str, SlaPartner]:
        rows = await self.session.scalars(select(SlaPartner).where(SlaPartner.partner_id.in_(list(partner_ids))))
        return {partner.partner_id: partner for partner in rows.all()}

    async def armed(self, until: datetime | None = None) -> list[tuple[datetime, str]]:
        """(due_at, clock_id) of every clock the scheduler must watch (due by `until`), earliest first."""
        query = (select(SlaClock.due_at, SlaClock.clock_id)
                 .where(SlaClock.armed.is_(True), SlaClock.status == "open").order_by(SlaClock.due_at))
        if until is not None:
            query = query.where(SlaClock.due_at <= until)
        rows = await self.session.execute(query)
        return [(due, clock_id) for due, clock_id in rows.all()]

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Armed clocks due at `now` (an index range, not a scan)."""
        rows = await self.session.scalars(select(SlaClock.clock_id).where(*_due(now))
                                          .order_by(SlaClock.due_at).limit(limit))
        return list(rows.all())

    async def unresolved_alerts(self, clock_id: str) -> list[SlaAlert]:
        view = batch_view(self.session)
        if view is not None and clock_id in view.alerts:
            return [a for a in view.alerts[clock_id] if a.status in UNRESOLVED]
        return list((await self.session.scalars(
            select(SlaAlert).where(SlaAlert.clock_id == clock_id, SlaAlert.status.in_(UNRESOLVED))
            .order_by(SlaAlert.period).with_for_update())).all())

    async def alert(self, alert_id: str, *, lock: bool = False) -> SlaAlert | None:
        if "\x00" in alert_id:
            return None
        query = select(SlaAlert).where(SlaAlert.alert_id == alert_id)
        if lock:
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def alerts_page(self, *, status: str | None, partner_id: str | None, kind: str | None,
                          lead_id: str | None, after: tuple[datetime, str] | None, limit: int) -> list[SlaAlert]:
        """Newest breach first; the cursor is the last row's (breached_at, alert_id)."""
        query = newest_first(select(SlaAlert), SlaAlert.breached_at, SlaAlert.alert_id, after, limit)
        if status is not None:
            query = query.where(SlaAlert.status == status)
        if partner_id is not None:
            query = query.where(SlaAlert.partner_id == partner_id)
        if kind is not None:
            query = query.where(SlaAlert.kind == kind)
        if lead_id is not None:
            query = query.where(SlaAlert.lead_id == lead_id)
        return list((await self.session.scalars(query)).all())

    async def open_clock_counts(self) -> dict[str, int]:
        rows = await self.session.execute(select(SlaClock.kind, func.count()).where(SlaClock.status == "open")
                                          .group_by(SlaClock.kind))
        return {kind: int(n) for kind, n in rows.all()}

    async def alert_counts(self) -> dict[tuple[str, str], int]:
        rows = await self.session.execute(select(SlaAlert.kind, SlaAlert.status, func.count())
                                          .group_by(SlaAlert.kind, SlaAlert.status))
        return {(kind, status): int(n) for kind, status, n in rows.all()}
