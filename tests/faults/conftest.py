"""Fault tests: real processes, a broker of their own that the test stops and restarts, both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fixtures.databases import drop_pg_database, migrated_pg, migrated_sqlite
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
