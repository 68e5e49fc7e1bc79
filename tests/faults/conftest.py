"""Fault tests: real processes, a broker of their own that the test stops and restarts, both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, session_factory
from tests.fixtures.databases import drop_pg_database, migrated_pg, migrated_sqlite, truncate_all
from tests.fixtures.processes import broker


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield await migrated_sqlite(str(tmp_path))
        return
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The bundled broker on a free port, shared by the fault tests that do not stop it."""
    with broker() as address:
        yield address


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test session's migrated database (SQLite or PostgreSQL), emptied afterwards."""
    engine = create_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        await truncate_all(engine)
        await engine.dispose()
