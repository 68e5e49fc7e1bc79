"""The SLA clocks: opening them with a snapshotted due time, meeting or closing them, and flagging
breaches. Services here take the session first and only flush; the consumer or the scheduler commits.

- accept: opened by `lead.routed`; met by `lead.accepted` or `lead.rejected`; closed by `lead.recalled`
  (breached and recalled) or by a newer `lead.routed` (superseded).
- first_touch: opened by `lead.accepted`; met by the first `lead.activity` or a final disposition.
- report_back: opened by `lead.accepted`; each `lead.activity` / `lead.disposition` meets it and opens
  the next one; a final disposition meets it for good. While nobody reports, it breaches again every
  period: after a breach it re-arms one period later.

A clock remembers whether it was met late (`met_at` after `due_at`) and whether it was ever flagged
(`breached`), so SLA-met rates can be computed from the rows. Flagging a breach locks the clock row,
inserts the alert for (clock, period) and moves the clock on in one transaction; the unique
(clock_id, period) constraint is the backstop that makes a second alert for the same deadline impossible
even with several monitor instances. The scheduler flags a batch of due clocks per transaction
(`breach_many`): one locking read, one bulk insert of the alerts, and the per-clock path only when that
insert meets the backstop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.sla_monitor.alert.schemas import to_json
from services.sla_monitor.clock import BusinessCalendar
from services.sla_monitor.deadline import calendar_for, due_after
from services.sla_monitor.hub import notify, schedule
from services.sla_monitor.policy.service import effective_policy
from services.sla_monitor.repository import SlaRepository, batch_view
from shared.config import Settings
from shared.events import MONITOR_SOURCE
from shared.models import SlaAlert, SlaClock, utcnow
from shared.outbox import add_event

log = logging.getLogger(__name__)

ACCEPT, FIRST_TOUCH, REPORT_BACK = "accept", "first_touch", "report_back"
KINDS = (ACCEPT, FIRST_TOUCH, REPORT_BACK)
POLICY_FIELD = {ACCEPT: "accept_within", FIRST_TOUCH: "first_touch_within", REPORT_BACK: "report_back_every"}
ALERT_KIND = {kind: f"{kind}_overdue" for kind in KINDS}
MAX_CATCH_UP = 10_000  # periods skipped at most when re-arming a report-back clock after a long outage


async def open_clock(session: AsyncSession, *, lead_id: str, partner_id: str | None, kind: str, at: datetime,
                     event_id: str) -> SlaClock:
    """Open a `kind` clock at `at` under the policy in force now for the partner."""
    policy = await effective_policy(session, partner_id)
    duration = getattr(policy, POLICY_FIELD[kind])
    calendar = calendar_for(await SlaRepository(session).partner(partner_id))
    due = due_after(at, duration, clock=policy.clock, calendar=calendar)
    action = policy.on_accept_breach if kind == ACCEPT else "alert"
    clock = SlaClock(clock_id=str(uuid.uuid4()), lead_id=lead_id, partner_id=partner_id, kind=kind, status="open",
                     policy=policy.name, clock=policy.clock, duration=duration, action=action, started_at=at,
                     due_at=due, armed=True, period=1, breached=False, opened_by=event_id, updated_at=utcnow())
    session.add(clock)
    view = batch_view(session)
    if view is not None:
        view.add_clock(clock)
    schedule(session, clock)
    return clock


async def meet(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime) -> None:
    """The awaited step happened at `at`: the clock is met (late if after its due time) and its alerts resolve."""
    clock.status, clock.met_at, clock.armed, clock.updated_at = "met", at, False, utcnow()
    clock.met_late = at > clock.due_at
    await _resolve_alerts(session, settings, clock, at, "met")
    _ended(session, settings, clock, at, "missed" if clock.met_late else "met")


async def close(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime, reason: str) -> None:
    """The clock ends without its step (the lead was recalled or offered anew); its alerts resolve with `reason`."""
    clock.status, clock.closed_at, clock.close_reason, clock.armed = "closed", at, reason, False
    clock.updated_at = utcnow()
    await _resolve_alerts(session, settings, clock, at, reason)
    if reason == "recalled":
        _ended(session, settings, clock, at, "missed")


VERDICT_KINDS = (ACCEPT, FIRST_TOUCH)  # the clocks whose outcome the SLA-met rates count


def _ended(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime, verdict: str) -> None:
    """Publish `sla.clock_ended`: an accept or first-touch clock ended `met` (on time) or `missed` (met late,
    or recalled). lead_router keeps the verdict on the offer, so its SLA-met rates need no access to the
    monitor's tables. Clocks closed for other reasons (superseded) have no verdict and publish nothing."""
    if clock.kind not in VERDICT_KINDS:
        return
    add_event(session, topic=settings.sla_topic, name="sla.clock_ended", source=MONITOR_SOURCE, subject=clock.lead_id,
              data={"clock_id": clock.clock_id, "lead_id": clock.lead_id, "partner_id": clock.partner_id,
                    "kind": clock.kind, "verdict": verdict, "started_at": clock.started_at.isoformat(),
                    "due_at": clock.due_at.isoformat(), "ended_at": at.isoformat()})


async def _resolve_alerts(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime,
                          resolution: str) -> None:
    now = utcnow()
    for alert in await SlaRepository(session).unresolved_alerts(clock.clock_id):
        alert.status, alert.resolution, alert.updated_at = "resolved", resolution, now
        alert.resolved_at = max(at, alert.breached_at)
        add_event(session, topic=settings.sla_topic, name="sla.resolved", source=MONITOR_SOURCE,
                  subject=alert.lead_id, data=to_json(alert))
        notify(session, alert)


@dataclass
class Flagged:
    """What one flagging transaction did: the new alerts, and the due clocks it left alone because another
    transaction held their rows (another monitor instance, or the consumer meeting them right now)."""

    alerts: list[SlaAlert] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)


def _is_due(clock: SlaClock, now: datetime) -> bool:
    return clock.status == "open" and clock.armed and clock.due_at <= now


async def breach(session: AsyncSession, settings: Settings, clock_id: str, now: datetime) -> SlaAlert | None:
    """Flag the clock's current deadline if it is due at `now`; None when there is nothing (more) to flag."""
    repo = SlaRepository(session)
    clock = await repo.clock(clock_id, lock=True)
    if clock is None or not _is_due(clock, now):
        return None
    alert = await _insert_alert(session, clock, now)
    if alert is None:
        return None
    partner = await repo.partner(clock.partner_id) if clock.kind == REPORT_BACK else None
    _advance(session, settings, clock, alert, now, calendar_for(partner))
    return alert


async def breach_many(session: AsyncSession, settings: Settings, clock_ids: Sequence[str], now: datetime
                      ) -> Flagged:
    """Flag, in the caller's transaction, every clock of `clock_ids` still due at `now` (`breached_at` =
    `now`). The due clocks are locked in one read that skips rows other transactions hold (reported as
    `busy`, to be tried again), their alerts go in as one bulk insert, and the clocks move on in the same
    flush. When the bulk insert meets the (clock_id, period) backstop (another instance got there first),
    it is undone and each clock takes the per-clock path, so one conflict never costs the others."""
    repo = SlaRepository(session)
    ids = list(dict.fromkeys(clock_ids))
    if not ids:
        return Flagged()
    clocks = await repo.lock_due(ids, now)
    locked = {clock.clock_id for clock in clocks}
    missing = [clock_id for clock_id in ids if clock_id not in locked]
    busy = await repo.still_due(missing, now) if missing else []
    if not clocks:
        return Flagged(busy=busy)
    alerts = [_new_alert(clock, now) for clock in clocks]
    try:
        async with session.begin_nested():
            session.add_all(alerts)
            await session.flush()
        flagged = list(zip(clocks, alerts, strict=True))
    except IntegrityError:  # some deadline was flagged by another instance: sort them out one by one
        log.info("a batch of %d clock(s) met an existing alert; flagging them one by one", len(clocks))
        flagged = []
        for clock in clocks:
            alert = await _insert_alert(session, clock, now)
            if alert is not None:
                flagged.append((clock, alert))
    partner_ids = {clock.partner_id for clock, _ in flagged if clock.kind == REPORT_BACK and clock.partner_id}
    partners = await repo.partners(partner_ids) if partner_ids else {}
    for clock, alert in flagged:
        calendar = calendar_for(partners.get(clock.partner_id or ""))
        _advance(session, settings, clock, alert, now, calendar)
    return Flagged(alerts=[alert for _, alert in flagged], busy=busy)


def _new_alert(clock: SlaClock, now: datetime) -> SlaAlert:
    return SlaAlert(alert_id=str(uuid.uuid4()), clock_id=clock.clock_id, period=clock.period, lead_id=clock.lead_id,
                    partner_id=clock.partner_id, kind=ALERT_KIND[clock.kind], action=clock.action, status="open",
                    due_at=clock.due_at, breached_at=now, updated_at=now)


async def _insert_alert(session: AsyncSession, clock: SlaClock, now: datetime) -> SlaAlert | None:
    """Insert the alert for the clock's current period in a savepoint; None if it exists already."""
    alert = _new_alert(clock, now)
    try:
        async with session.begin_nested():
            session.add(alert)
            await session.flush()
    except IntegrityError:  # another instance flagged this deadline first
        log.info("clock %s period %s was already flagged", clock.clock_id, clock.period)
        return None
    return alert


def _advance(session: AsyncSession, settings: Settings, clock: SlaClock, alert: SlaAlert, now: datetime,
             calendar: BusinessCalendar) -> None:
    """The alert for the clock's deadline is in: mark the clock breached, re-arm or disarm it, and stage
    the `sla.breached` event and the stream notification."""
    clock.breached, clock.updated_at = True, now
    clock.breached_at = clock.breached_at or now
    if clock.kind == REPORT_BACK:
        _rearm(session, clock, now, calendar)
    else:
        clock.armed = False  # one deadline: the clock now waits for its step (or a recall)
    data = to_json(alert)
    if clock.action == "recall":
        data["action"] = "recall"
    add_event(session, topic=settings.sla_topic, name="sla.breached", source=MONITOR_SOURCE, subject=clock.lead_id,
              data=data)
    notify(session, alert)


def _rearm(session: AsyncSession, clock: SlaClock, now: datetime, calendar: BusinessCalendar) -> None:
    """Next report-back deadline: one period after the one just flagged. Periods that passed while the
    monitor was down are skipped (one alert says "overdue", not one per missed period)."""
    due = clock.due_at
    for _ in range(MAX_CATCH_UP):
        due = due_after(due, clock.duration, clock=clock.clock, calendar=calendar)
        if due > now:
            break
    else:
        due = now + timedelta(seconds=1)
    clock.due_at, clock.period = due, clock.period + 1
    schedule(session, clock)
