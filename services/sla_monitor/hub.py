"""What happens after a monitor transaction commits: new deadlines reach the scheduler, changed alerts
reach the stream's subscribers.

Handlers and services only *stage* these in the session (`schedule`, `notify`, kept by `shared.db.AtCommit`);
they are handed over once the transaction is durable, and a rollback drops what it undid. So the scheduler
never waits on a clock that does not exist, and nobody is told of an alert that was never stored. The
monitor's session factory carries its `Hub` in `Session.info`; sessions without one are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import AtCommit
from shared.events import CloudEvent
from shared.models import SlaAlert, SlaClock

log = logging.getLogger(__name__)

HUB_KEY = "sla_hub"


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False


class AlertBroadcaster:
    """In-process fan-out of alert changes to the SSE streams. A subscriber that falls `maxsize` events
    behind is cut off (its stream ends; the client reconnects and reads the list) instead of holding
    memory without bound."""

    RECENT = 10_000  # changes remembered, so one reported twice (locally and from the topic) is sent once

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self.subscribers: set[Subscription] = set()
        self.recent: OrderedDict[tuple[Any, ...], None] = OrderedDict()

    def publish(self, item: dict[str, Any]) -> None:
        """Send an alert change to every subscriber, once: a change made in this process arrives both right
        after its commit and again from `<prefix>.sla`; a change made by another monitor only from there."""
        change = tuple(item.get(k) for k in ("alert_id", "status", "acknowledged_at", "resolved_at"))
        if change in self.recent:
            return
        self.recent[change] = None
        if len(self.recent) > self.RECENT:
            self.recent.popitem(last=False)
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.overflowed = True
                self.subscribers.discard(sub)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        sub = Subscription(self.maxsize)
        self.subscribers.add(sub)
        try:
            yield sub
        finally:
            self.subscribers.discard(sub)


class Hub:
    def __init__(self) -> None:
        self.broadcaster = AlertBroadcaster()
        self.on_due: Callable[[datetime, str], None] | None = None  # set by a running scheduler
        self.serialize: Callable[[SlaAlert], dict[str, Any]] | None = None

    def committed(self, due: list[tuple[datetime, str]], alerts: list[SlaAlert]) -> None:
        if self.on_due is not None:
            for due_at, clock_id in due:
                self.on_due(due_at, clock_id)
        if self.serialize is not None:
            for alert in alerts:
                self.broadcaster.publish(self.serialize(alert))


def monitor_sessions(engine: AsyncEngine, hub: Hub) -> async_sessionmaker[AsyncSession]:
    """The monitor's session factory: like `shared.db.session_factory`, with the hub attached."""
    return async_sessionmaker(engine, expire_on_commit=False, info={HUB_KEY: hub})


def schedule(session: AsyncSession, clock: SlaClock) -> None:
    """After commit, have the scheduler watch this clock's due time."""
    if clock.armed and clock.status == "open":
        _HAND_OVER.add(session, (clock.due_at, clock.clock_id))


def notify(session: AsyncSession, alert: SlaAlert) -> None:
    """After commit, tell the stream's subscribers about this new or changed alert (once per commit)."""
    _HAND_OVER.add(session, alert)


def _hand_over(session: Session, items: list[tuple[datetime, str] | SlaAlert]) -> None:
    hub = session.info.get(HUB_KEY)
    if hub is None:
        return
    due = [item for item in items if isinstance(item, tuple)]
    alerts = {item.alert_id: item for item in items if isinstance(item, SlaAlert)}  # the last change of each
    hub.committed(due, list(alerts.values()))


_HAND_OVER = AtCommit("sla hub hand-over", _hand_over)  # due clocks and changed alerts, in the order staged


ALERT_EVENTS = ("sla.breached", "sla.resolved", "sla.acknowledged")


async def feed_from_topic(settings: Settings, hub: Hub) -> None:
    """Every alert change of every monitor instance reaches this one's stream: read `<prefix>.sla` from its
    end (no consumer group: each instance reads everything) and hand the alert changes to the broadcaster."""
    backoff = 0.5
    while True:
        consumer = AIOKafkaConsumer(settings.sla_topic, bootstrap_servers=settings.bootstrap, group_id=None,
                                    auto_offset_reset="latest", enable_auto_commit=False,
                                    fetch_max_wait_ms=settings.background_fetch_wait_ms)
        try:
            await asyncio.wait_for(consumer.start(), 30)
            backoff = 0.5
            async for record in consumer:
                try:
                    event = CloudEvent.parse(record.value)
                except ValueError:
                    continue
                if event.name in ALERT_EVENTS and event.data.get("alert_id"):
                    hub.broadcaster.publish(event.data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker went away: start over
            log.warning("alert stream feed failed (%s); restarting in %.1fs", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10)
        finally:
            stopping = asyncio.create_task(consumer.stop())
            await asyncio.wait({stopping}, timeout=5)
