"""The SLA monitor's own tables: policies, its projection of partners, clocks and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow


class SlaPolicy(Base):
    """A stored SLA policy: `default`, or one named by the partner id it applies to."""

    __tablename__ = "sla_policies"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    accept_within: Mapped[str] = mapped_column(String(40))
    first_touch_within: Mapped[str] = mapped_column(String(40))
    report_back_every: Mapped[str] = mapped_column(String(40))
    clock: Mapped[str] = mapped_column(String(16))
    on_accept_breach: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlaPartner(Base):
    """The monitor's projection of a partner's calendar, kept from `partner.upserted`."""

    __tablename__ = "sla_partners"

    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    business_hours: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    holiday_country: Mapped[str | None] = mapped_column(String(16), nullable=True)
    source_time: Mapped[datetime] = mapped_column(UTCDateTime)  # the event's time: older upserts are ignored
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlaClock(Base):
    """One SLA clock of one lead: `accept`, `first_touch` or `report_back`.

    `due_at` is snapshotted from the policy when the clock opens. `armed` says the scheduler watches
    `due_at`; `period` counts the deadlines this clock has had (a report-back clock re-arms after each
    breach), so an alert is unique per (clock, period). A clock ends `met` (with `met_at` and whether that
    was after the due time) or `closed` (recalled, superseded).
    """

    __tablename__ = "sla_clocks"
    __table_args__ = (Index("ix_sla_clocks_armed_due", "armed", "due_at"),
                      Index("ix_sla_clocks_lead_kind_status", "lead_id", "kind", "status"),
                      Index("ix_sla_clocks_partner_kind", "partner_id", "kind"))

    clock_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(36))
    partner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # accept | first_touch | report_back
    status: Mapped[str] = mapped_column(String(16))  # open | met | closed
    policy: Mapped[str] = mapped_column(String(64))
    clock: Mapped[str] = mapped_column(String(16))  # business_hours | calendar
    duration: Mapped[str] = mapped_column(String(40))  # ISO 8601, as in the policy
    action: Mapped[str] = mapped_column(String(16))  # alert | recall
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    armed: Mapped[bool] = mapped_column(Boolean, default=True)
    period: Mapped[int] = mapped_column(Integer, default=1)
    breached: Mapped[bool] = mapped_column(Boolean, default=False)
    breached_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    met_late: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    close_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    opened_by: Mapped[str] = mapped_column(String(64))  # the CloudEvent id that opened it
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlaAlert(Base):
    """A breach of one clock period. The unique (clock_id, period) makes raising it twice impossible."""

    __tablename__ = "sla_alerts"
    __table_args__ = (UniqueConstraint("clock_id", "period", name="uq_sla_alerts_clock_period"),
                      Index("ix_sla_alerts_breached", "breached_at", "alert_id"),
                      Index("ix_sla_alerts_status_breached", "status", "breached_at"),
                      Index("ix_sla_alerts_partner_status", "partner_id", "status"))

    alert_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    clock_id: Mapped[str] = mapped_column(ForeignKey("sla_clocks.clock_id", ondelete="CASCADE"))
    period: Mapped[int] = mapped_column(Integer)
    lead_id: Mapped[str] = mapped_column(String(36))
    partner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))  # accept_overdue | first_touch_overdue | report_back_overdue
    action: Mapped[str] = mapped_column(String(16))  # alert | recall
    status: Mapped[str] = mapped_column(String(16))  # open | acknowledged | resolved
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    breached_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(String(32), nullable=True)  # met | recalled | superseded
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
