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
even with several monitor instances.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.sla_monitor.alert.schemas import to_json
from services.sla_monitor.deadline import calendar_for, due_after
from services.sla_monitor.hub import notify, schedule
from services.sla_monitor.policy.service import effective_policy
from services.sla_monitor.repository import SlaRepository
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
    schedule(session, clock)
    return clock


async def meet(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime) -> None:
    """The awaited step happened at `at`: the clock is met (late if after its due time) and its alerts resolve."""
    clock.status, clock.met_at, clock.armed, clock.updated_at = "met", at, False, utcnow()
    clock.met_late = at > clock.due_at
    await _resolve_alerts(session, settings, clock, at, "met")


async def close(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime, reason: str) -> None:
    """The clock ends without its step (the lead was recalled or offered anew); its alerts resolve with `reason`."""
    clock.status, clock.closed_at, clock.close_reason, clock.armed = "closed", at, reason, False
    clock.updated_at = utcnow()
    await _resolve_alerts(session, settings, clock, at, reason)


async def _resolve_alerts(session: AsyncSession, settings: Settings, clock: SlaClock, at: datetime,
                          resolution: str) -> None:
    now = utcnow()
    for alert in await SlaRepository(session).unresolved_alerts(clock.clock_id):
        alert.status, alert.resolution, alert.updated_at = "resolved", resolution, now
        alert.resolved_at = max(at, alert.breached_at)
        add_event(session, topic=settings.sla_topic, name="sla.resolved", source=MONITOR_SOURCE,
                  subject=alert.lead_id, data=to_json(alert))
        notify(session, alert)


async def breach(session: AsyncSession, settings: Settings, clock_id: str, now: datetime) -> SlaAlert | None:
    """Flag the clock's current deadline if it is due at `now`; None when there is nothing (more) to flag."""
    repo = SlaRepository(session)
    clock = await repo.clock(clock_id, lock=True)
    if clock is None or clock.status != "open" or not clock.armed or clock.due_at > now:
        return None
    alert = SlaAlert(alert_id=str(uuid.uuid4()), clock_id=clock.clock_id, period=clock.period, lead_id=clock.lead_id,
                     partner_id=clock.partner_id, kind=ALERT_KIND[clock.kind], action=clock.action, status="open",
                     due_at=clock.due_at, breached_at=now, updated_at=now)
    try:
        async with session.begin_nested():
            session.add(alert)
            await session.flush()
    except IntegrityError:  # another instance flagged this deadline first
        log.info("clock %s period %s was already flagged", clock.clock_id, clock.period)
        return None
    clock.breached, clock.updated_at = True, now
    clock.breached_at = clock.breached_at or now
    if clock.kind == REPORT_BACK:
        await _rearm(session, clock, now)
    else:
        clock.armed = False  # one deadline: the clock now waits for its step (or a recall)
    data = to_json(alert)
    if clock.action == "recall":
        data["action"] = "recall"
    add_event(session, topic=settings.sla_topic, name="sla.breached", source=MONITOR_SOURCE, subject=clock.lead_id,
              data=data)
    notify(session, alert)
    return alert


async def _rearm(session: AsyncSession, clock: SlaClock, now: datetime) -> None:
    """Next report-back deadline: one period after the one just flagged. Periods that passed while the
    monitor was down are skipped (one alert says "overdue", not one per missed period)."""
    calendar = calendar_for(await SlaRepository(session).partner(clock.partner_id))
    due = clock.due_at
    for _ in range(MAX_CATCH_UP):
        due = due_after(due, clock.duration, clock=clock.clock, calendar=calendar)
        if due > now:
            break
    else:
        due = now + timedelta(seconds=1)
    clock.due_at, clock.period = due, clock.period + 1
    schedule(session, clock)
