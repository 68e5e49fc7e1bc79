from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.sla_monitor.app import create_app
from services.sla_monitor.handlers import monitor_batch, monitor_handlers
from shared.config import Settings
from shared.events import CloudEvent, new_event
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.apps import asgi_client, serving


@pytest.fixture
def monitor_settings(db_url: str) -> Settings:
    """Monitor settings for in-process tests: no Kafka, no scheduler task (tests drive `flag_due`)."""
    return Settings(database_url=db_url, admin_token=ADMIN_TOKEN, sla_run_kafka=False, sla_run_scheduler=False,
                    kafka_bootstrap="127.0.0.1:1", topic_prefix="test", sla_stream_keepalive_s=0.2)


@pytest.fixture
async def monitor_app(monitor_settings: Settings) -> AsyncIterator[FastAPI]:
    async with serving(create_app(monitor_settings)) as app:
        yield app


@pytest.fixture
async def monitor(monitor_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(monitor_app, "http://sla-monitor") as client:
        yield client


Feed = Callable[..., Any]


@pytest.fixture(params=["handler", "batch"])
def feed(monitor_app: FastAPI, monitor_settings: Settings, request: pytest.FixtureRequest) -> Feed:
    """`await feed("lead.routed", lead_id, at, partner_id=..., **data)`: run the monitor's handler for that
    event in its own transaction, as the consumer would: the plain handler (a failed batch's retry), and the
    batch handler that reads what the events need up front (a fetch)."""
    handlers = monitor_handlers(monitor_settings)
    if request.param == "batch":
        batch = monitor_batch(monitor_settings)
        handlers = {name: lambda session, event: batch(session, [event]) for name in handlers}

    async def run(name: str, subject: str, at: datetime, **data: Any) -> CloudEvent:
        if name.startswith("lead."):
            data = {"lead_id": subject, "status": "offered", "source": "generic", **data}
        event = new_event(name, source="/lead-router", subject=subject, data=data, at=at)
        async with monitor_app.state.sessions() as session, session.begin():
            await handlers[name](session, event)
        return event

    return run


def t(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A UTC instant in November 2026 (the 16th is a Monday)."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)
