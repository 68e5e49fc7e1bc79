"""PostgreSQL: which process's outbox relay publishes is a setting (`LEADROUTER_RELAY_PREFERRED`); `leadrouter up`
gives the lead to its router worker while the API routes on intake, and the monitor keeps it otherwise."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shared.broker import free_port
from shared.cli import process_roles
from shared.config import Settings
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.databases import drop_pg_database, migrated_pg
from tests.fixtures.processes import ADMIN_TOKEN, Service, service_env, unique_prefix

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def pg_db() -> AsyncIterator[str]:
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)


def gauge(service: Service, name: str) -> float:
    text = httpx.get(f"{service.url}/metrics", timeout=5).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"no {name} on {service.module}"
    return float(m.group(1))


def test_up_prefers_the_router_worker_while_the_api_routes_on_intake() -> None:
    """The monitor keeps its default (empty is unset), which outranks a worker that says `false`."""
    roles = {name: extra for name, _, extra in process_roles(Settings(route_on_intake=True))}
    assert [roles[r]["LEADROUTER_RELAY_PREFERRED"] for r in ("lead_router", "router worker", "sla_monitor")] == [
        "false", "true", ""]
    roles = {name: extra for name, _, extra in process_roles(Settings(route_on_intake=False))}
    assert [roles[r]["LEADROUTER_RELAY_PREFERRED"] for r in ("lead_router", "router worker", "sla_monitor")] == [
        "false", "false", ""]
    assert Settings(relay_preferred="").relay_preferred is None  # type: ignore[arg-type]


def test_the_preferred_router_worker_publishes_and_the_monitor_stands_by(
        pg_db: str, bootstrap: str, tmp_path: Path) -> None:
    """The monitor, with the setting unset, leads first; the worker that says `true` outranks it and gets the lead
    handed over."""
    env = service_env(pg_db, bootstrap, unique_prefix())
    worker_port, monitor_port = free_port(), free_port()
    worker = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(worker_port),
                                              "LEADROUTER_RELAY_PREFERRED": "true"}, worker_port,
                     tmp_path / "worker.log")
    monitor = Service("services.sla_monitor", {**env, "LEADROUTER_MONITOR_PORT": str(monitor_port)}, monitor_port,
                      tmp_path / "monitor.log")
    monitor.start()
    try:
        monitor.wait_until(lambda: gauge(monitor, "leadrouter_outbox_relay_leading") == 1, 30)
        worker.start()
        worker.wait_until(lambda: gauge(worker, "leadrouter_outbox_relay_leading") == 1, 30)
        assert gauge(monitor, "leadrouter_outbox_relay_leading") == 0
        with httpx.Client(base_url=worker.url, timeout=10) as http:
            assert http.put("/v1/partners/alpha", json=partner_body(), headers=ADMIN).status_code == 201
            lead_id = http.post("/v1/webhooks/generic", json=lead_body()).json()["lead_id"]
            worker.wait_until(lambda: http.get(f"/v1/leads/{lead_id}", headers=ADMIN).json()["status"] == "offered",
                              30)
        worker.wait_until(lambda: gauge(worker, "leadrouter_outbox_published") > 0, 30)  # its relay published
        assert gauge(monitor, "leadrouter_outbox_relay_leading") == 0
    finally:
        worker.stop()
        monitor.stop()
