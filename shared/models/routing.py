from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow


class RuleSet(Base):
    """Every rule set ever stored; the highest version is the active one."""

    __tablename__ = "rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RoutingState(Base):
    """Per-rule strategy state (round-robin cursor, smooth-weighted current weights)."""

    __tablename__ = "routing_state"

    rule: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartnerLoad(Base):
    """A partner's open leads (offered, accepted, working), kept by triggers on `leads` in the transaction
    that changes a lead's status or partner (migration 8e41d7c09b3a), so routing reads a row per partner
    instead of counting leads. Changing which statuses are open means a migration of those triggers."""

    __tablename__ = "partner_open_leads"

    partner_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    open_leads: Mapped[int] = mapped_column(Integer, default=0)


class RoutingInputsVersion(Base):
    """One row whose `version` changes, by triggers on `partners` and `rule_sets` (migration 2f6b9d4e8a17), in
    every transaction that changes a partner or stores a rule set, so a router can reuse the partners and rule
    set it read while the version it sees is the same. No row (a table emptied by hand): nothing is reused
    until the next change writes one, starting from a random version."""

    __tablename__ = "routing_inputs_version"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
