from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import SlaAlert

ALERT_KINDS = ("accept_overdue", "first_touch_overdue", "report_back_overdue")
ALERT_STATUSES = ("open", "acknowledged", "resolved")


class AlertRead(BaseModel):
    alert_id: str
    lead_id: str
    partner_id: str | None
    kind: Literal["accept_overdue", "first_touch_overdue", "report_back_overdue"]
    status: Literal["open", "acknowledged", "resolved"]
    action: Literal["alert", "recall"]
    due_at: datetime
    breached_at: datetime
    resolved_at: datetime | None
    resolution: str | None = Field(description="How it resolved: `met` (the awaited step happened), "
                                               "`recalled`, or `superseded` (the lead was offered anew).")
    period: int = Field(description="Which deadline of the clock this is (report back breaches each period).")
    clock_id: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None
    updated_at: datetime


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


def to_read(alert: SlaAlert) -> AlertRead:
    return AlertRead(alert_id=alert.alert_id, lead_id=alert.lead_id, partner_id=alert.partner_id,
                     kind=alert.kind, status=alert.status, action=alert.action,  # type: ignore[arg-type]
                     due_at=alert.due_at, breached_at=alert.breached_at, resolved_at=alert.resolved_at,
                     resolution=alert.resolution, period=alert.period, clock_id=alert.clock_id,
                     acknowledged_at=alert.acknowledged_at, acknowledged_by=alert.acknowledged_by,
                     note=alert.note, updated_at=alert.updated_at)


def to_json(alert: SlaAlert) -> dict[str, Any]:
    return to_read(alert).model_dump(mode="json")
