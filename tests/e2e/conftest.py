from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fixtures.databases import drop_pg_database, migrated_pg, migrated_sqlite
from tests.fixtures.processes import broker


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """The bundled broker on a free port, for the whole session."""
    with broker() as address:
        yield address


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new migrated database for one end-to-end test."""
    if request.param == "sqlite":
        yield await migrated_sqlite(str(tmp_path))
        return
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)
