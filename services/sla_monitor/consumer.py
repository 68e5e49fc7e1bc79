"""The monitor's consumer: `<prefix>.leads` and `<prefix>.partners` into the handlers, one group."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sla_monitor.handlers import monitor_batch, monitor_handlers
from shared.config import Settings
from shared.kafka import ConsumerLoop

CONSUMER_NAME = "sla-monitor"


def monitor_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}.{CONSUMER_NAME}"


def monitor_consumer(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ConsumerLoop:
    """A fetch's events run in one transaction (see `shared.kafka.handle_batch`), in order, after one read
    of the clocks, alerts, calendars and policies they need (`monitor_batch`); a lead's `lead.routed` and
    `lead.accepted` in the same batch see each other. A failed batch is retried one event at a time through
    the plain handlers."""
    return ConsumerLoop(settings, sessions, name=CONSUMER_NAME, topics=[settings.leads_topic, settings.partners_topic],
                        group_id=monitor_group(settings), handlers=monitor_handlers(settings),
                        batch=monitor_batch(settings), gather=True)
