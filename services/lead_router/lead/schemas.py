from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

Note = Annotated[str, StringConstraints(max_length=2000)]


class ContactRead(BaseModel):
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    title: str | None = None


class LeadRead(BaseModel):
    lead_id: str
    source: str
    external_id: str
    status: str
    partner_id: str | None
    score: int | None
    product: str | None
    estimated_value: float | None
    campaign: str | None
    company: dict[str, Any]
    contact: ContactRead
    won_amount: float | None = None
    created_at: datetime
    updated_at: datetime
    routed_at: datetime | None
    accepted_at: datetime | None
    closed_at: datetime | None


class TimelineItem(BaseModel):
    event_id: str
    type: str
    at: datetime
    partner_id: str | None
    data: dict[str, Any]


class Timeline(BaseModel):
    items: list[TimelineItem]


class StepResult(BaseModel):
    lead_id: str
    status: str


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Literal["not_in_territory", "no_capacity", "not_qualified", "duplicate", "bad_contact_data",
                    "existing_customer", "other"]
    note: Note | None = None


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["first_touch", "follow_up"]
    channel: Literal["call", "email", "meeting", "other"]
    occurred_at: AwareDatetime | None = Field(default=None, description="When it happened; defaults to now.")
    note: Note | None = None


class ActivityRead(BaseModel):
    lead_id: str
    event_id: str
    type: str
    channel: str
    occurred_at: datetime
    note: str | None


class DispositionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["working", "won", "lost", "no_decision"]
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    reason: Annotated[str, StringConstraints(max_length=200)] | None = None
    note: Note | None = None
