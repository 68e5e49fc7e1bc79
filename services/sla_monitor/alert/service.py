"""Alerts as admins see them: lists, acknowledgement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.sla_monitor.alert.schemas import AckIn, AlertRead, to_json, to_read
from services.sla_monitor.hub import notify
from services.sla_monitor.repository import SlaRepository
from shared.config import Settings
from shared.errors import NotFound, TransitionNotAllowed
from shared.events import MONITOR_SOURCE
from shared.models import utcnow
from shared.outbox import add_event


async def list_alerts(session: AsyncSession, *, status: str | None, partner_id: str | None, kind: str | None,
                      lead_id: str | None, after: tuple[datetime, str] | None, limit: int) -> list[AlertRead]:
    rows = await SlaRepository(session).alerts_page(status=status, partner_id=partner_id, kind=kind,
                                                    lead_id=lead_id, after=after, limit=limit)
    return [to_read(row) for row in rows]


async def get_alert(session: AsyncSession, alert_id: str) -> AlertRead:
    alert = await SlaRepository(session).alert(alert_id)
    if alert is None:
        raise NotFound(f"No alert {alert_id!r}.")
    return to_read(alert)


async def acknowledge(session: AsyncSession, alert_id: str, body: AckIn, *, settings: Settings) -> AlertRead:
    """Open -> acknowledged. Acknowledging again returns the alert as it is (the first acknowledgement
    stays); a resolved alert cannot be acknowledged (409). An acknowledged alert still resolves itself
    when the awaited step happens."""
    alert = await SlaRepository(session).alert(alert_id, lock=True)
    if alert is None:
        raise NotFound(f"No alert {alert_id!r}.")
    if alert.status == "resolved":
        raise TransitionNotAllowed("The alert is already resolved.")
    if alert.status == "open":
        now = utcnow()
        alert.status, alert.acknowledged_at, alert.acknowledged_by, alert.note = "acknowledged", now, body.by, body.note
        alert.updated_at = now
        notify(session, alert)
        add_event(session, topic=settings.sla_topic, name="sla.acknowledged", source=MONITOR_SOURCE,
                  subject=alert.lead_id, data=to_json(alert))  # every monitor's stream shows it
    return to_read(alert)
