"""CloudEvents 1.0 envelope (structured JSON mode) and the event names of the contract."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from shared.models.base import utcnow

CONTENT_TYPE = "application/cloudevents+json"
TYPE_PREFIX = "leadrouter."

LEAD_EVENTS = ("lead.received", "lead.nurturing", "lead.routed", "lead.accepted", "lead.rejected",
               "lead.recalled", "lead.activity", "lead.disposition", "lead.unroutable", "lead.updated")
SLA_EVENTS = ("sla.breached", "sla.resolved", "sla.acknowledged", "sla.clock_ended")
PARTNER_EVENTS = ("partner.upserted",)

ROUTER_SOURCE = "/lead-router"
MONITOR_SOURCE = "/sla-monitor"


class CloudEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    specversion: str = "1.0"
    id: str
    source: str
    type: str
    subject: str | None = None
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any]

    @property
    def name(self) -> str:
        """`lead.routed` for `leadrouter.lead.routed`."""
        return self.type.removeprefix(TYPE_PREFIX)

    @classmethod
    def parse(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


def new_event(name: str, *, source: str, subject: str, data: dict[str, Any],
              at: datetime | None = None, event_id: str | None = None) -> CloudEvent:
    return CloudEvent(id=event_id or str(uuid.uuid4()), source=source, type=TYPE_PREFIX + name,
                      subject=subject, time=at or utcnow(), data=data)


def encode(event: CloudEvent) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))
