"""Fault tests: real processes, a broker of their own that the test stops and restarts, both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.databases import drop_pg_database, migrated_pg, migrated_sqlite


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield await migrated_sqlite(str(tmp_path))
        return
    url = await migrated_pg()
    yield url
    await drop_pg_database(url)
