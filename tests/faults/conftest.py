"""Fault tests: real processes, a broker of their own that the test stops and restarts, both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import create_engine, session_factory
from tests.fixtures.databases import truncate_all


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test session's migrated database (SQLite or PostgreSQL), emptied afterwards."""
    engine = create_engine(db_url)
    try:
        yield session_factory(engine)
    finally:
        await truncate_all(engine)
        await engine.dispose()
