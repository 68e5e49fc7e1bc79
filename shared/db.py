"""Engine and session factories. Created in a service's lifespan, never at import time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, event, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An async engine. On SQLite every transaction takes the write lock up front (`BEGIN IMMEDIATE`)
    with a busy timeout, so the services' processes queue for the file instead of failing with
    "database is locked"; WAL keeps readers of other processes unblocked."""
    if is_sqlite(url):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it costs two round trips per checkout, a third of a webhook's time; connections
    # are recycled instead, and asyncpg reports a dead one on first use.
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commits when the block ends, rolls back when it raises."""
    async with sessions() as session, session.begin():
        yield session


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


_STAGED = "db:staged_inserts"  # Session.info: [(savepoint or None, table, row), ...] in the order staged


def stage_insert(session: AsyncSession | Session, model: type[DeclarativeBase], row: dict[str, Any]) -> None:
    """Insert `row` into `model`'s table when the session's transaction commits, together with every other
    row staged for that table: one statement per table, no ORM object (outbox events and timeline entries,
    written by the hundred and never read back in the transaction that writes them). Rows keep the order
    they were staged in (an outbox row's id is its publishing order); pending ORM objects are flushed
    first, so a staged row may refer to them. A rollback drops the rows staged in what it rolls back: the
    transaction, or a savepoint and the savepoints inside it."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info.setdefault(_STAGED, []).append((sync.get_nested_transaction(), model.__table__, row))


@event.listens_for(Session, "before_commit")
def _insert_staged(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint's commit: its rows wait for the transaction's
        return
    staged: list[tuple[Any, Table, dict[str, Any]]] | None = session.info.pop(_STAGED, None)
    if not staged:
        return
    session.flush()
    tables: dict[Table, list[dict[str, Any]]] = {}
    for _, table, row in staged:
        tables.setdefault(table, []).append(row)
    for table, rows in tables.items():
        session.execute(insert(table), rows)


@event.listens_for(Session, "after_soft_rollback")
def _drop_staged(session: Session, previous_transaction: SessionTransaction) -> None:
    if not previous_transaction.nested:  # the transaction itself
        session.info.pop(_STAGED, None)
        return
    staged = session.info.get(_STAGED)
    if staged:  # a savepoint: drop what was staged in it or in a savepoint inside it
        session.info[_STAGED] = [entry for entry in staged if not _within(entry[0], previous_transaction)]


def _within(transaction: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False
