"""Deliveries racing in two API processes make one lead: the same `webhook-id` with different bodies, and
the same person (email) from two sources (PostgreSQL: two processes really write concurrently; SQLite
serializes every write)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from shared.broker import free_port
from shared.db import create_engine
from shared.models import Lead, WebhookReceipt
from tests.fixtures.builders import lead_body
from tests.fixtures.databases import drop_pg_database, migrated_pg
from tests.fixtures.processes import Service, http, service_env, unique_prefix

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


def _race(apis: list[Service], deliveries: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    """Each (source, body, headers) posted to its own process at the same instant."""
    barrier = threading.Barrier(len(apis))
    responses: list[httpx.Response] = []

    def deliver(api: Service, source: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        client = http()  # made before the barrier: making one takes ~25 ms, which would spread the race
        barrier.wait()
        responses.append(client.post(f"{api.url}/v1/webhooks/{source}", json=body, headers=headers, timeout=30))

    threads = [threading.Thread(target=deliver, args=(api, *d)) for api, d in zip(apis, deliveries, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


async def test_one_webhook_id_one_lead_across_processes(two_apis: list[Service], pg_db: str) -> None:
    statuses: list[int] = []
    for _ in range(ROUNDS):
        headers = {"webhook-id": f"msg_{uuid.uuid4().hex}"}
        # a different body (another external id, another person) on each side
        statuses += [r.status_code for r in _race(two_apis, [
            ("generic", lead_body(external_id=f"ext-{uuid.uuid4().hex}"), headers) for _ in two_apis])]
    engine = create_engine(pg_db)
    try:
        async with engine.connect() as conn:
            leads = await conn.scalar(select(func.count()).select_from(Lead))
            receipts = await conn.scalar(select(func.count()).select_from(WebhookReceipt))
    finally:
        await engine.dispose()
    assert (leads, receipts) == (ROUNDS, ROUNDS)
    assert sorted(statuses) == [200] * ROUNDS + [202] * ROUNDS


async def test_one_person_one_open_lead_across_processes(two_apis: list[Service], pg_db: str) -> None:
    responses: list[httpx.Response] = []
    for i in range(ROUNDS):
        person = f"pat.lee+{i}@example.com"
        responses += _race(two_apis, [
            ("generic", lead_body(external_id=f"g-{uuid.uuid4().hex}", email=person), {}),
            ("marketo", lead_body(external_id=f"m-{uuid.uuid4().hex}", email=f" {person.upper()} ", score=90), {})])
    engine = create_engine(pg_db)
    try:
        async with engine.connect() as conn:
            leads = await conn.scalar(select(func.count()).select_from(Lead))
            people = await conn.scalar(select(func.count(func.distinct(Lead.email_norm))))
    finally:
        await engine.dispose()
    assert (leads, people) == (ROUNDS, ROUNDS)
    assert sorted(r.status_code for r in responses) == [200] * ROUNDS + [202] * ROUNDS, [r.text for r in responses]
