from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.lead_router.app import create_app
from shared.config import Settings
from tests.fixtures.apps import asgi_client, serving
from tests.fixtures.databases import drop_pg_database, migrated_pg, migrated_sqlite
from tests.fixtures.processes import broker

ADMIN_TOKEN = "test-admin-token"
SECRET_KEY = "test-secret-key-for-encrypting-source-secrets"


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return await migrated_sqlite(str(tmp_path_factory.mktemp("db")))


@pytest.fixture(scope="session")
async def pg_url() -> AsyncIterator[str]:
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The bundled broker on a free port, for the whole session (tests that stop it start their own)."""
    with broker() as address:
        yield address


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new migrated database for one test that runs real processes."""
    if request.param == "sqlite":
        yield await migrated_sqlite(str(tmp_path))
        return
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    return url


@pytest.fixture
def settings(db_url: str) -> Settings:
    """lead_router settings for in-process API tests: no Kafka parts, no routing on intake (routing is driven
    by the test; tests/lead_router/routing/test_on_intake.py turns it on)."""
    return Settings(database_url=db_url, admin_token=ADMIN_TOKEN, run_relay=False, run_router=False,
                    route_on_intake=False,
                    kafka_bootstrap="127.0.0.1:1", topic_prefix="test", performance_refresh_s=0,
                    secret_key=SECRET_KEY)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with serving(create_app(settings)) as app:
        yield app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app, "http://lead-router") as client:
        yield client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
