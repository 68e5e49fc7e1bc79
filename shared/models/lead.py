from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow

# Leads in a final status (won, lost, no decision) are closed; every other lead is open.
OPEN_PREDICATE = "status NOT IN ('won', 'lost', 'no_decision')"


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_leads_source_external_id"),
        Index("ix_leads_status_created", "status", "created_at"),
        Index("ix_leads_partner_status", "partner_id", "status"),
        Index("ix_leads_created", "created_at"),
        # One open lead per person: a second lead with the email of an open one cannot be inserted (intake
        # merges into the open lead instead), also when two deliveries race in two processes.
        Index("uq_leads_open_email", "email_norm", unique=True,
              postgresql_where=text(OPEN_PREDICATE), sqlite_where=text(OPEN_PREDICATE)),
    )

    lead_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    product: Mapped[str | None] = mapped_column(String(100), nullable=True)
    estimated_value: Mapped[float | None] = mapped_column(Float, nullable=True)
    campaign: Mapped[str | None] = mapped_column(String(200), nullable=True)
    company: Mapped[dict[str, Any]] = mapped_column(JSON)
    contact: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    won_amount: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The contact's email, trimmed and lower-cased (dots and plus tags kept): the person behind the lead.
    email_norm: Mapped[str | None] = mapped_column(String(320), nullable=True)


class WebhookReceipt(Base):
    """A `webhook-id` seen for a source, so a redelivered webhook creates nothing new."""

    __tablename__ = "webhook_receipts"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.lead_id", ondelete="CASCADE"))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeadEvent(Base):
    """The lead's timeline: every state change, with its data (routing explanations included)."""

    __tablename__ = "lead_events"
    __table_args__ = (Index("ix_lead_events_lead_at", "lead_id", "seq"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.lead_id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    partner_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class LeadOffer(Base):
    """One offer of a lead to a partner and how it ended: the disposition history metrics read."""

    __tablename__ = "lead_offers"
    # ix_lead_offers_partner_offered covers, on PostgreSQL, every column the metrics read: their per-partner
    # LATERAL reads are index-only scans of one range each (services/lead_router/metrics/repository.py).
    __table_args__ = (Index("ix_lead_offers_lead_partner", "lead_id", "partner_id"),
                      Index("ix_lead_offers_partner_offered", "partner_id", "offered_at",
                            postgresql_include=["status", "reason", "first_touch_at", "accept_sla", "first_touch_sla",
                                                "outcome", "amount", "accept_s", "first_touch_s"]),
                      Index("ix_lead_offers_offered_partner", "offered_at", "partner_id"))

    offer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(ForeignKey("leads.lead_id", ondelete="CASCADE"))
    partner_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # offered | accepted | rejected | recalled
    offered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    first_touch_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the metrics read, kept on the offer as plain numbers and labels so every database aggregates
    # them the same way (no dialect date arithmetic): seconds from offer to accept and to the first
    # activity's `occurred_at` (never below 0), the SLA monitor's verdict on the offer's accept and
    # first-touch clocks (`met` on time or `missed`, from `sla.clock_ended`), and the partner's final
    # disposition of the lead it accepted.
    accept_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    first_touch_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    accept_sla: Mapped[str | None] = mapped_column(String(8), nullable=True)
    first_touch_sla: Mapped[str | None] = mapped_column(String(8), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # won | lost | no_decision
    amount: Mapped[float | None] = mapped_column(Float, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
