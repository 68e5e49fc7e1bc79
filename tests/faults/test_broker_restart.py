"""The bundled broker stopped for 12 s (twice the consumers' session timeout) and restarted empty while 500
leads are posted (issue 10).

The broker keeps nothing: events published but not yet consumed are gone, the topics come back with the
broker's own partition count, and the consumers' positions point past the new logs. Every lead must still
be routed through the event path (the reconciler is slowed to 10 minutes here, so it cannot be what saves
them) within seconds of the restart, and every offered lead must have its SLA accept clock: the relays
notice the lost log and publish again what consumers may not have seen, and the consumers notice their
positions are past the new logs and start over (idempotent on the event id).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from shared.broker import free_port
from shared.db import create_engine
from shared.models import DeadLetter, Lead, LeadOffer, OutboxMessage, ProcessedEvent, SlaClock
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.processes import ADMIN_TOKEN, RestartableBroker, Service, http, service_env, unique_prefix

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEADS_BEFORE, LEADS_DURING = 200, 300
DOWN_S = 12.0  # longer than the consumers' session timeout (6 s in service_env): their group sessions expire


@pytest.fixture
def services(fresh_db: str, tmp_path: Path) -> Iterator[tuple[RestartableBroker, list[Service]]]:
    broker = RestartableBroker(tmp_path / "broker.log")
    env = service_env(fresh_db, broker.bootstrap, unique_prefix(), LEADROUTER_TOPIC_PARTITIONS="6",
                      LEADROUTER_RECONCILE_INTERVAL_S="600", LEADROUTER_RECONCILE_GRACE_S="600",
                      LEADROUTER_ROUTE_ON_INTAKE="false")  # every lead through the event path
    api, worker, monitor = free_port(), free_port(), free_port()
    procs = [Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(api),
                                              "LEADROUTER_RUN_ROUTER": "false"}, api, tmp_path / "api.log"),
             Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(worker)}, worker,
                     tmp_path / "worker.log"),
             Service("services.sla_monitor", {**env, "LEADROUTER_MONITOR_PORT": str(monitor)}, monitor,
                     tmp_path / "monitor.log")]
    try:
        for proc in procs:
            proc.start()
        yield broker, procs
    finally:
        for proc in procs:
            proc.stop()
        broker.stop()


def post(url: str, count: int, spread_s: float = 0.0, latencies: list[float] | None = None) -> list[str]:
    """Post `count` leads from 8 threads, the i-th not before `spread_s * i / count` from now."""
    start = time.monotonic()

    def one(i: int) -> str:
        time.sleep(max(0.0, start + spread_s * i / count - time.monotonic()))
        began = time.monotonic()
        response = http().post(f"{url}/v1/webhooks/generic", json=lead_body(), timeout=30)
        if latencies is not None:
            latencies.append(time.monotonic() - began)
        assert response.status_code == 202, response.text
        return str(response.json()["lead_id"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


async def counts(db_url: str) -> tuple[int, int, int, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            leads = await conn.scalar(select(func.count()).select_from(Lead))
            offered = await conn.scalar(select(func.count()).select_from(Lead).where(Lead.status == "offered"))
            offers = await conn.scalar(select(func.count()).select_from(LeadOffer))
            clocks = await conn.scalar(select(func.count(func.distinct(SlaClock.lead_id))).where(
                SlaClock.kind == "accept", SlaClock.status == "open"))
    finally:
        await engine.dispose()
    return int(leads or 0), int(offered or 0), int(offers or 0), int(clocks or 0)


async def pipeline_state(db_url: str) -> str:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            outbox = (await conn.execute(select(func.count(), func.count(OutboxMessage.sent_at)))).one()
            handled = (await conn.execute(select(ProcessedEvent.consumer, func.count())
                                          .group_by(ProcessedEvent.consumer))).all()
            parked = await conn.scalar(select(func.count()).select_from(DeadLetter))
    finally:
        await engine.dispose()
    return f"outbox rows {outbox[0]} ({outbox[1]} sent), handled {dict(handled)}, dead letters {parked}"


async def test_broker_restarted_empty(services: tuple[RestartableBroker, list[Service]],
                                      fresh_db: str) -> None:
    broker, (api, worker, monitor) = services
    with httpx.Client(base_url=api.url, timeout=10) as client:
        for i in range(5):
            body = partner_body(name=f"p{i}", capacity={"max_open_leads": None})
            assert client.put(f"/v1/partners/p{i}", json=body, headers=ADMIN).status_code == 201
    sent = post(api.url, 1)  # through the whole pipeline first: every consumer has joined and is reading
    for _ in range(100):
        if (await counts(fresh_db))[3] == 1:
            break
        await asyncio.sleep(0.1)
    sent += post(api.url, LEADS_BEFORE)
    broker.stop()  # events of the last leads are still in flight: published, not all consumed
    stopped = time.monotonic()
    during: list[float] = []
    sent += post(api.url, LEADS_DURING, spread_s=9, latencies=during)  # stored while the broker is down
    print(f"broker down: {len(during)} webhooks, the longest took {max(during):.3f}s")
    # no write waits for the broker (a send would wait 10 s, its request timeout); 5 s leaves room for a busy box
    assert max(during) < 5.0, f"a webhook waited {max(during):.2f}s while the broker was down"
    await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - stopped)))
    broker.start()
    restarted = time.monotonic()
    total = 1 + LEADS_BEFORE + LEADS_DURING
    seen = (0, 0, 0, 0)
    while time.monotonic() - restarted < 45:
        seen = await counts(fresh_db)
        if seen == (total, total, total, total):
            break
        await asyncio.sleep(0.5)
    assert len(set(sent)) == total
    # leads stored, leads offered, offers made (none twice), leads with an open accept clock
    if seen != (total, total, total, total):  # say where the events stopped: the outbox, a consumer, the logs
        pytest.fail(f"after {time.monotonic() - restarted:.0f}s: {seen}; {await pipeline_state(fresh_db)}\n"
                    + "\n".join(proc.excerpt() for proc in (api, worker, monitor)))
    print(f"after the restart: {total} leads stored, offered once and clocked within "
          f"{time.monotonic() - restarted:.1f}s")
    # the monitor is still consuming: a lead posted now gets its clock too
    [late] = post(api.url, 1)
    for _ in range(75):
        if (await counts(fresh_db))[3] == total + 1:
            break
        await asyncio.sleep(0.2)
    assert (await counts(fresh_db))[3] == total + 1, late
    for proc in (api, monitor):  # the restart was noticed and said once, not a line per retry
        log = proc.log.read_text()
        assert len(re.findall(r"OffsetCommit failed", log)) < 50, log[-3000:]
