from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow


class Partner(Base):
    __tablename__ = "partners"

    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    territories: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    products: Mapped[list[str]] = mapped_column(JSON, default=list)
    industries: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_open_leads: Mapped[int | None] = mapped_column(Integer, nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    business_hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holiday_country: Mapped[str | None] = mapped_column(String(8), nullable=True)
    fiscal_year_start_month: Mapped[int] = mapped_column(Integer, default=1)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # The Standard Webhooks secret notifications are signed with (`whsec_...`; shown once when made), and
    # whether the webhook is on (a 410 from it turns it off until `webhook_url` is set again).
    webhook_secret: Mapped[str | None] = mapped_column(String(200), nullable=True)
    webhook_enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The partner's Mutual Operating Periods (`{"start_months": [1, 7]}`; null: its fiscal quarters) and
    # its own objectives (`[{"metric", "target", "per"}]`).
    operating_periods: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    objectives: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartnerApiKey(Base):
    """An API key is `lrk_<key_id>_<secret>`; only the SHA-256 of the secret is kept."""

    __tablename__ = "partner_api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.partner_id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
