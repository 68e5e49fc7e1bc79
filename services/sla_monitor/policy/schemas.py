from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.sla_monitor.clock import parse_iso_duration

POLICY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
DURATION_FIELDS = ("accept_within", "first_touch_within", "report_back_every")

Duration = Field(min_length=2, max_length=40, examples=["PT4H"])


class PolicyBody(BaseModel):
    """An SLA policy. Durations are ISO 8601 (`PT4H`, `P2D`, `P1W`; no years or months). Under
    `business_hours` the days and weeks of a duration count working days (`P1D`: the same local time on
    the next working day) and its hours, minutes and seconds count business time; under `calendar`
    everything counts plain time."""

    model_config = ConfigDict(extra="forbid")

    accept_within: str = Duration
    first_touch_within: str = Duration
    report_back_every: str = Duration
    clock: Literal["business_hours", "calendar"] = "business_hours"
    on_accept_breach: Literal["alert", "recall"] = "alert"

    @field_validator(*DURATION_FIELDS)
    @classmethod
    def _iso_duration(cls, value: str) -> str:
        length = parse_iso_duration(value)  # ValueError -> 422 with the field named
        if length.total_seconds() <= 0:
            raise ValueError("must be longer than zero")
        return value


BUILTIN_DEFAULT = PolicyBody(accept_within="PT4H", first_touch_within="PT24H", report_back_every="P7D",
                             clock="business_hours", on_accept_breach="alert")


class PolicyRead(PolicyBody):
    name: str
    builtin: bool = Field(default=False, description="True for the built-in default, never stored.")
    updated_at: datetime | None = None
