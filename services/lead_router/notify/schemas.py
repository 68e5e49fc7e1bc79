from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

DeliveryStatus = Literal["pending", "delivered", "failed", "disabled"]


class WebhookSecretCreated(BaseModel):
    secret: str = Field(description="Standard Webhooks secret (`whsec_...`). Shown once; a new one replaces it.")


class DeliveryRead(BaseModel):
    delivery_id: str
    type: str
    lead_id: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
