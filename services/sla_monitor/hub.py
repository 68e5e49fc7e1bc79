"""What happens after a monitor transaction commits: new deadlines reach the scheduler, changed alerts
reach the stream's subscribers.

Handlers and services only *stage* these in the session (`schedule`, `notify`); an `after_commit`
listener hands them over once the transaction is durable, and a rollback drops them. So the scheduler
never waits on a clock that does not exist, and nobody is told of an alert that was never stored. The
monitor's session factory carries its `Hub` in `Session.info`; sessions without one are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from shared.models import SlaAlert, SlaClock

log = logging.getLogger(__name__)

HUB_KEY = "sla_hub"
_DUE_KEY = "sla_due"
_ALERTS_KEY = "sla_alerts"


class Subscription:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False


class AlertBroadcaster:
    """In-process fan-out of alert changes to the SSE streams. A subscriber that falls `maxsize` events
    behind is cut off (its stream ends; the client reconnects and reads the list) instead of holding
    memory without bound."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self.subscribers: set[Subscription] = set()

    def publish(self, item: dict[str, Any]) -> None:
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
        session.info.setdefault(_DUE_KEY, []).append((clock.due_at, clock.clock_id))


def notify(session: AsyncSession, alert: SlaAlert) -> None:
    """After commit, tell the stream's subscribers about this new or changed alert (once per commit)."""
    session.info.setdefault(_ALERTS_KEY, {})[alert.alert_id] = alert


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    hub = session.info.get(HUB_KEY)
    due = session.info.pop(_DUE_KEY, None) or []
    alerts = session.info.pop(_ALERTS_KEY, None) or {}
    if hub is None or not (due or alerts):
        return
    try:
        hub.committed(due, list(alerts.values()))
    except Exception:  # noqa: BLE001 - the transaction is committed; a listener must not undo the caller
        log.exception("after-commit hand-over failed")


@sa_event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(_DUE_KEY, None)
    session.info.pop(_ALERTS_KEY, None)
