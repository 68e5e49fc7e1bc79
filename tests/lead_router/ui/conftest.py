"""Fixtures for the ops page: in-process app tests on SQLite with a monitor address nobody listens on, and
for the browser test the real processes (bundled broker, lead_router, sla_monitor) on a fresh SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.broker import free_port
from shared.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.databases import migrated_sqlite
from tests.fixtures.processes import Service, service_env, unique_prefix


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """The page and the proxy do not depend on the database kind: SQLite only."""
    return sqlite_url


@pytest.fixture
def settings(db_url: str) -> Settings:
    """lead_router in process, no Kafka parts, and a monitor address with nothing listening."""
    return Settings(database_url=db_url, admin_token=ADMIN_TOKEN, run_relay=False, run_router=False,
                    kafka_bootstrap="127.0.0.1:1", topic_prefix="test",
                    monitor_url=f"http://127.0.0.1:{free_port()}")


class OpsStack:
    """lead_router and sla_monitor on free ports, one fresh database, lead_router proxying to the monitor."""

    def __init__(self, db_url: str, bootstrap: str, tmp_path: Path) -> None:
        router_port, monitor_port = free_port(), free_port()
        env = service_env(db_url, bootstrap, unique_prefix(), LEADROUTER_ROUTER_PORT=str(router_port),
                          LEADROUTER_MONITOR_PORT=str(monitor_port),
                          LEADROUTER_MONITOR_URL=f"http://127.0.0.1:{monitor_port}",
                          LEADROUTER_SLA_STREAM_KEEPALIVE_S="2")
        self.router = Service("services.lead_router", env, router_port, tmp_path / "router.log")
        self.monitor = Service("services.sla_monitor", env, monitor_port, tmp_path / "monitor.log")
        self.monitor_killed = False

    def start(self) -> OpsStack:
        self.router.start()
        self.monitor.start()
        return self

    def kill_monitor(self) -> None:
        self.monitor.stop(kill=True)
        self.monitor_killed = True

    def stop(self) -> None:
        # A monitor started after a kill waits out the dead member's Kafka session before it can leave its
        # group; nothing here is about a clean shutdown, so do not wait for that.
        self.monitor.stop(kill=self.monitor_killed)
        self.router.stop()


@pytest.fixture
async def fresh_sqlite(tmp_path: Path) -> str:
    return await migrated_sqlite(str(tmp_path))


@pytest.fixture
def ops_stack(fresh_sqlite: str, bootstrap: str, tmp_path: Path) -> Iterator[OpsStack]:
    stack = OpsStack(fresh_sqlite, bootstrap, tmp_path)
    try:
        yield stack.start()
    finally:
        stack.stop()
