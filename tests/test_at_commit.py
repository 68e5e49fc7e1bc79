"""`shared.db.AtCommit`: work a transaction keeps for when it commits (the staged rows, the wake-ups, the
monitor's hand-over and the source cache's mark all use it). What a rollback undid is dropped, a savepoint's
release is not a commit, and nothing outlives its transaction. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from shared.db import AtCommit
from shared.models import ProcessedEvent
from tests.fixtures.databases import cleaned_sessions

CONSUMER = "at-commit-test"


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with cleaned_sessions(db_url, delete(ProcessedEvent).where(ProcessedEvent.consumer == CONSUMER)) as factory:
        yield factory


def recorder() -> tuple[AtCommit, list[list[Any]]]:
    seen: list[list[Any]] = []

    def then(_session: Session, items: list[Any]) -> None:
        seen.append(items)

    return AtCommit("test", then), seen


async def test_a_commit_hands_over_what_no_rollback_undid(sessions: async_sessionmaker[AsyncSession]) -> None:
    work, seen = recorder()
    async with sessions() as session, session.begin():
        work.add(session, "before")
        async with session.begin_nested():  # released: its items wait for the transaction
            work.add(session, "released")
        assert seen == []
        outer = await session.begin_nested()
        work.add(session, "undone")
        inner = await session.begin_nested()
        work.add(session, "undone inside")
        await inner.commit()
        await outer.rollback()  # undoes the released savepoint inside it too
        work.add(session, "after")
        assert work.items(session) == ["before", "released", "after"]
    assert seen == [["before", "released", "after"]]


async def test_a_failed_flush_in_a_savepoint_drops_only_that_savepoint(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """The way savepoints fail here: an insert meets a unique key inside one and the error is caught. The flush
    rolls back its own sub-transaction, which is not the savepoint; what it undid is the savepoint."""
    work, seen = recorder()
    key = f"at-commit-{time.monotonic_ns()}"
    async with sessions() as session, session.begin():
        session.add(ProcessedEvent(consumer=CONSUMER, event_id=key))
    async with sessions() as session, session.begin():
        work.add(session, "kept")
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                work.add(session, "dropped")
                session.add(ProcessedEvent(consumer=CONSUMER, event_id=key))
                await session.flush()
    assert seen == [["kept"]]


async def test_a_rollback_hands_over_nothing_and_nothing_outlives_the_transaction(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    work, seen = recorder()
    async with sessions() as session:
        async with session.begin():
            work.add(session, "rolled back")
            await session.rollback()
        async with session.begin():  # the same session's next transaction starts empty
            assert work.items(session) == []
            work.add(session, "committed")
    assert seen == [["committed"]]
    async with sessions() as session:  # closed with its transaction open: no commit, no rollback event
        await session.begin()
        await session.execute(text("SELECT 1"))
        work.add(session, "abandoned")
        await session.close()
        async with session.begin():
            assert work.items(session) == []
    assert seen == [["committed"]]


async def test_work_that_fails_after_the_commit_is_logged_and_the_rest_still_runs(
        sessions: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture) -> None:
    def boom(_session: Session, _items: list[Any]) -> None:
        raise RuntimeError("boom")

    failing = AtCommit("failing", boom)
    work, seen = recorder()
    with caplog.at_level(logging.ERROR, logger="shared.db"):
        async with sessions() as session, session.begin():
            failing.add(session)
            work.add(session, "still handed over")
    assert seen == [["still handed over"]]
    assert "AtCommit('failing') failed after the commit" in caplog.text
    async with sessions() as session:  # the transaction did commit
        assert (await session.execute(text("SELECT 1"))).scalar() == 1


async def test_work_after_the_commit_may_take_another_instances_items(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """Whichever runs first, a `then` that takes what another instance kept does not make the commit raise."""
    work, seen = recorder()

    def taker(_session: Session, _items: list[Any]) -> None:
        seen.append(["taken", *work.take(_session)])

    first = AtCommit("first", taker)
    async with sessions() as session, session.begin():
        first.add(session)
        work.add(session, "kept")
    assert seen in ([["taken", "kept"]], [["kept"], ["taken"]])


async def test_take_and_discard_remove_the_items(sessions: async_sessionmaker[AsyncSession]) -> None:
    work, seen = recorder()
    async with sessions() as session, session.begin():
        work.add(session, 1)
        work.add(session, 2)
        assert work.take(session) == [1, 2]
        work.add(session, 3)
        work.discard(session)
    assert seen == []
