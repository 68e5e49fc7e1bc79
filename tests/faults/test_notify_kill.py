"""SIGKILL of the router worker while it delivers partner notifications, then a restart: every offer's
notification still arrives, and none is marked delivered twice (issue 8). A real receiver in the test
process answers slowly, so the kill lands with deliveries pending and in flight."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from sqlalchemy import func, select

from shared.broker import free_port
from shared.db import create_engine
from shared.models import WebhookAttempt, WebhookDelivery
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.processes import ADMIN_TOKEN, Service, service_env, unique_prefix
from tests.fixtures.receiver import receiving

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEADS = 60


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        seen.append(request.headers["webhook-id"])
        return web.Response(text="ok")

    async with receiving(handle) as url:
        yield url, seen


async def delivery_counts(db_url: str) -> tuple[int, int, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.count()).select_from(WebhookDelivery))
            delivered = await conn.scalar(select(func.count()).select_from(WebhookDelivery).where(
                WebhookDelivery.status == "delivered"))
            ok_twice = await conn.scalar(select(func.count()).select_from(
                select(WebhookAttempt.delivery_id).where(WebhookAttempt.status_code == 200)
                .group_by(WebhookAttempt.delivery_id).having(func.count() > 1).subquery()))
    finally:
        await engine.dispose()
    return int(total or 0), int(delivered or 0), int(ok_twice or 0)


async def test_killed_worker_delivers_everything_once(fresh_db: str, bootstrap: str, tmp_path: Path,
                                                      receiver: tuple[str, list[str]]) -> None:
    url, seen = receiver
    api_port, worker_port = free_port(), free_port()
    # The worker routes and sends every notification (no routing on intake, so no delivery worker in the API).
    env = service_env(fresh_db, bootstrap, unique_prefix(), LEADROUTER_WEBHOOK_ALLOW_PRIVATE="true",
                      LEADROUTER_DELIVERY_LEASE_S="3", LEADROUTER_DELIVERY_PER_PARTNER="2",
                      LEADROUTER_ROUTE_ON_INTAKE="false")
    api = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(api_port),
                                           "LEADROUTER_RUN_ROUTER": "false"}, api_port, tmp_path / "api.log")
    worker = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(worker_port)}, worker_port,
                     tmp_path / "worker.log")
    try:
        api.start()
        worker.start()
        with httpx.Client(base_url=api.url, timeout=10) as client:
            body = partner_body(name="Acme", capacity={"max_open_leads": None}, webhook_url=url)
            assert client.put("/v1/partners/acme", json=body, headers=ADMIN).status_code == 201
            assert client.post("/v1/partners/acme/webhook-secret", headers=ADMIN).status_code == 201
            for i in range(LEADS):
                assert client.post("/v1/webhooks/generic", json=lead_body(external_id=f"n-{i}")).status_code == 202
        for _ in range(200):  # kill while notifications are going out
            if len(seen) >= 10:
                break
            await asyncio.sleep(0.05)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        worker.proc = None
        killed_at = len(seen)
        assert killed_at < LEADS, "everything went out before the kill; the test proves nothing"
        worker.start()
        counts = (0, 0, 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = await delivery_counts(fresh_db)
            if counts[:2] == (LEADS, LEADS):
                break
            await asyncio.sleep(0.3)
        assert counts == (LEADS, LEADS, 0)  # one delivery per offer, all delivered, none recorded delivered twice
        assert len(set(seen)) == LEADS  # every notification arrived (a resend after the kill may repeat one)
    finally:
        worker.stop()
        api.stop()
