"""The monitor's consumer: `<prefix>.leads` and `<prefix>.partners` into the handlers, one group."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.sla_monitor.handlers import monitor_handlers
from shared.config import Settings
from shared.kafka import ConsumerLoop

CONSUMER_NAME = "sla-monitor"


def monitor_consumer(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> ConsumerLoop:
    return ConsumerLoop(settings, sessions, name=CONSUMER_NAME, topics=[settings.leads_topic, settings.partners_topic],
                        group_id=f"{settings.topic_prefix}.{CONSUMER_NAME}", handlers=monitor_handlers(settings))
