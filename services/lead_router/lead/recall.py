"""Recall: the SLA monitor's `sla.breached` with action `recall` takes a lead back from a late partner."""

from __future__ import annotations

from shared.config import Settings
from shared.kafka import Handler


def sla_handlers(settings: Settings) -> dict[str, Handler]:
    """Handlers for `<prefix>.sla` in lead_router (filled in by the SLA monitor work)."""
    return {}
