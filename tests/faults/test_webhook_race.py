"""The same `webhook-id` delivered at once to two API processes, with different bodies, makes one lead
(PostgreSQL: two processes really write concurrently; SQLite serializes every write)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from shared.broker import free_port
from shared.db import create_engine
from shared.models import Lead, WebhookReceipt
from tests.fixtures.builders import lead_body
from tests.fixtures.databases import drop_pg_database, migrated_pg
from tests.fixtures.processes import Service, service_env, unique_prefix

ROUNDS = 25


@pytest.fixture
async def pg_db() -> AsyncIterator[str]:
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)


@pytest.fixture
def two_apis(pg_db: str, tmp_path: Path) -> Iterator[list[Service]]:
    env = service_env(pg_db, "127.0.0.1:1", unique_prefix(), LEADROUTER_RUN_RELAY="false",
                      LEADROUTER_RUN_ROUTER="false")
    ports = [free_port(), free_port()]
    apis = [Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(port)}, port,
                    tmp_path / f"api{i}.log") for i, port in enumerate(ports)]
    try:
        for api in apis:
            api.start(wait_ready=False)  # no broker in this test: /readyz would say so
        yield apis
    finally:
        for api in apis:
            api.stop()


async def test_one_webhook_id_one_lead_across_processes(two_apis: list[Service], pg_db: str) -> None:
    statuses: list[int] = []
    for _ in range(ROUNDS):
        webhook_id = f"msg_{uuid.uuid4().hex}"
        barrier = threading.Barrier(len(two_apis))

        def deliver(api: Service, webhook_id: str = webhook_id, barrier: threading.Barrier = barrier) -> None:
            body = lead_body(external_id=f"ext-{uuid.uuid4().hex}")  # a different body on each side
            barrier.wait()
            response = httpx.post(f"{api.url}/v1/webhooks/generic", json=body, headers={"webhook-id": webhook_id},
                                  timeout=30)
            statuses.append(response.status_code)

        threads = [threading.Thread(target=deliver, args=(api,)) for api in two_apis]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    engine = create_engine(pg_db)
    try:
        async with engine.connect() as conn:
            leads = await conn.scalar(select(func.count()).select_from(Lead))
            receipts = await conn.scalar(select(func.count()).select_from(WebhookReceipt))
    finally:
        await engine.dispose()
    assert (leads, receipts) == (ROUNDS, ROUNDS)
    assert sorted(statuses) == [200] * ROUNDS + [202] * ROUNDS
