"""SIGKILL in the middle of a 500-lead run, then restart: nothing lost, nothing doubled (issue 10).

Each scenario kills one process while leads pour in: the router worker, the API process, the monitor, or
one of two router workers sharing the consumer group (a rebalance; it stays dead). Afterwards every lead a
client got a 2xx for is stored once, offered once (one offer), has exactly its received and routed
timeline entries, and has one open SLA accept clock; no alert was raised (the accept SLA is an hour)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from shared.broker import free_port
from shared.db import create_engine
from shared.models import Lead, LeadEvent, LeadOffer, SlaAlert, SlaClock
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.processes import ADMIN_TOKEN, Service, http, service_env, unique_prefix

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
LEADS = 500


class Run:
    def __init__(self, db_url: str, bootstrap: str, tmp_path: Path, *, route_on_intake: bool = True) -> None:
        ports = {name: free_port() for name in ("api", "worker", "worker2", "monitor")}
        env = service_env(db_url, bootstrap, unique_prefix(), LEADROUTER_MONITOR_PORT=str(ports["monitor"]),
                          LEADROUTER_ROUTE_ON_INTAKE=str(route_on_intake).lower())
        self.api = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(ports["api"]),
                                                    "LEADROUTER_RUN_ROUTER": "false"}, ports["api"],
                           tmp_path / "api.log")
        self.worker = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(ports["worker"])},
                              ports["worker"], tmp_path / "worker.log")
        self.worker2 = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(ports["worker2"])},
                               ports["worker2"], tmp_path / "worker2.log")
        self.monitor = Service("services.sla_monitor", env, ports["monitor"], tmp_path / "monitor.log")
        self.services = [self.api, self.worker, self.monitor]


@pytest.fixture
def run(fresh_db: str, bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Run]:
    # A killed worker matters when it routes: the API routes nothing on intake then, every lead goes the event
    # path. A killed API is killed with routing on intake, as it runs by default: leads it stored but had not
    # routed yet are routed from their events.
    victim = request.node.callspec.params["victim"]
    running = Run(fresh_db, bootstrap, tmp_path, route_on_intake=victim not in ("worker", "one_of_two_workers"))
    try:
        yield running
    finally:
        for service in (running.api, running.worker, running.worker2, running.monitor):
            service.stop()


def post_all(url: str, count: int, posted: list[str], kill_after: int, kill: threading.Event) -> set[str]:
    """Post `count` leads from 8 threads; a post the dead API could not take is sent again (the same
    external id: a duplicate at worst). Signals `kill` once `kill_after` are in."""
    accepted: set[str] = set()
    lock = threading.Lock()

    def one(i: int) -> None:
        body = lead_body(external_id=f"kill-{i}")
        for _ in range(300):
            try:
                response = http().post(f"{url}/v1/webhooks/generic", json=body, timeout=10)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            if response.status_code in (200, 202):
                with lock:
                    accepted.add(body["external_id"])
                    posted.append(response.json()["lead_id"])
                    if len(accepted) == kill_after:
                        kill.set()
                return
            time.sleep(0.1)
        raise AssertionError(f"lead {i} was never accepted")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    return accepted


async def tallies(db_url: str) -> dict[str, int]:
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            async def count(query: object) -> int:
                return int(await conn.scalar(query) or 0)  # type: ignore[arg-type]
            return {
                "leads": await count(select(func.count()).select_from(Lead)),
                "offered": await count(select(func.count()).select_from(Lead).where(Lead.status == "offered")),
                "offers": await count(select(func.count()).select_from(LeadOffer)),
                "timeline": await count(select(func.count()).select_from(LeadEvent)),
                "clocks": await count(select(func.count()).select_from(SlaClock).where(
                    SlaClock.kind == "accept", SlaClock.status == "open")),
                "clock_leads": await count(select(func.count(func.distinct(SlaClock.lead_id))).where(
                    SlaClock.kind == "accept")),
                "alerts": await count(select(func.count()).select_from(SlaAlert)),
            }
    finally:
        await engine.dispose()


@pytest.mark.parametrize("victim", ["worker", "api", "monitor", "one_of_two_workers"])
async def test_sigkill_mid_run(run: Run, fresh_db: str, victim: str) -> None:
    if victim == "one_of_two_workers":
        run.services.append(run.worker2)
    for service in run.services:
        service.start()
    with httpx.Client(base_url=run.api.url, timeout=10) as client:
        for i in range(5):
            assert client.put(f"/v1/partners/p{i}", json=partner_body(name=f"p{i}", capacity={"max_open_leads": None}),
                              headers=ADMIN).status_code == 201
    with httpx.Client(base_url=run.monitor.url, timeout=10) as monitor:
        policy = {"accept_within": "PT1H", "first_touch_within": "PT1H", "report_back_every": "PT1H",
                  "clock": "calendar", "on_accept_breach": "alert"}
        assert monitor.put("/v1/sla/policies/default", json=policy, headers=ADMIN).status_code == 201
    # One lead through the whole pipeline first: every consumer has joined its group, so the kill lands
    # while leads are being routed and clocked, not before anything has started.
    http().post(f"{run.api.url}/v1/webhooks/generic", json=lead_body(external_id="warm-up")).raise_for_status()
    for _ in range(100):
        if (await tallies(fresh_db))["clocks"] == 1:
            break
        await asyncio.sleep(0.1)
    target = {"worker": run.worker, "api": run.api, "monitor": run.monitor, "one_of_two_workers": run.worker}[victim]
    kill = threading.Event()
    posted: list[str] = []

    def killer() -> None:
        kill.wait(60)
        assert target.proc is not None
        target.proc.send_signal(signal.SIGKILL)
        target.proc.wait()
        target.proc = None
        if victim != "one_of_two_workers":  # the survivor takes over its partitions instead
            time.sleep(1)
            target.start(wait_ready=victim != "api")

    thread = threading.Thread(target=killer)
    thread.start()
    accepted = await asyncio.to_thread(post_all, run.api.url, LEADS, posted, 200, kill)
    thread.join(90)
    assert len(accepted) == LEADS
    leads = LEADS + 1  # and the warm-up lead
    want = {"leads": leads, "offered": leads, "offers": leads, "timeline": 2 * leads, "clocks": leads,
            "clock_leads": leads, "alerts": 0}
    seen: dict[str, int] = {}
    for _ in range(120):
        seen = await tallies(fresh_db)
        if seen == want:
            break
        await asyncio.sleep(0.5)
    assert seen == want
