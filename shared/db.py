"""Engine and session factories. Created in a service's lifespan, never at import time."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    URL,
    ColumnElement,
    String,
    Table,
    bindparam,
    delete,
    event,
    insert,
    make_url,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction

log = logging.getLogger(__name__)


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


def asyncpg_dsn(url: str | URL) -> str:
    """The DSN asyncpg itself takes for a SQLAlchemy PostgreSQL URL (`postgresql+asyncpg://...`)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


PURGE_BATCH = 5_000


async def delete_in_batches(sessions: async_sessionmaker[AsyncSession], model: type[DeclarativeBase],
                            *where: ColumnElement[bool], batch: int = PURGE_BATCH) -> int:
    """Delete `model`'s rows matching `where`, `batch` rows a transaction, until none is left; the number
    deleted. A purge's first run over a large, old table is many short transactions, not one that holds its
    locks and its WAL for minutes (rows cascading from them go with their batch). Batches walk the primary key
    from where the last one stopped: a filter without an index would otherwise have each batch scan again
    the rows the ones before it deleted (PostgreSQL keeps them until a vacuum)."""
    table = cast(Table, model.__table__)
    key = list(table.primary_key.columns)
    row_key = tuple_(*key) if len(key) > 1 else key[0]
    deleted, last = 0, None
    while True:
        async with sessions() as session, session.begin():
            query = select(*key).where(*where).order_by(*key).limit(batch)
            if last is not None:
                query = query.where(row_key > (tuple_(*last) if len(key) > 1 else last[0]))
            found = [tuple(row) for row in (await session.execute(query)).all()]
            if found:
                await session.execute(delete(table).where(
                    row_key.in_(found if len(key) > 1 else [k for (k,) in found])))
        deleted += len(found)
        if len(found) < batch:
            return deleted
        last = found[-1]


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


def rolled_back_savepoint(previous_transaction: SessionTransaction) -> SessionTransaction | None:
    """In an `after_soft_rollback` listener: the savepoint that rollback undid, or None when it undid the
    transaction itself. A flush that fails inside a savepoint rolls back the flush's own sub-transaction, which
    is not nested: what it undid is the nearest savepoint above it (or, with none, the transaction)."""
    transaction: SessionTransaction | None = previous_transaction
    while transaction is not None and not transaction.nested:
        transaction = transaction.parent
    return transaction


class AtCommit:
    """Work a transaction keeps in `Session.info` for when it commits (staged rows, wake-ups, hand-overs):
    entries recorded with the savepoint open when each was added, so that

    - a rollback drops what it undid: every entry when it undid the transaction; when it undid a savepoint,
      the entries added in it or in a savepoint inside it (the others still commit with the transaction);
    - a savepoint's release keeps them for the transaction (`after_commit` fires for a release too);
    - a transaction that ends without its commit or a rollback event (a session closed with it open, a
      ROLLBACK that failed) leaves nothing for the session's next one;
    - once the transaction has committed, `then(session, items)` gets what is left, in the order added
      (an exception there is logged: the transaction is committed, the caller must not see it fail).

    One set of session listeners serves every instance: the instance itself is its key in `Session.info`."""

    def __init__(self, name: str, then: Callable[[Session, list[Any]], None] | None = None) -> None:
        self.name = name
        self.then = then

    def __repr__(self) -> str:
        return f"AtCommit({self.name!r})"

    def add(self, session: AsyncSession | Session, item: Any = True) -> None:
        sync = _sync(session)
        sync.info.setdefault(self, []).append((sync.get_nested_transaction(), item))

    def items(self, session: AsyncSession | Session) -> list[Any]:
        return [item for _, item in _sync(session).info.get(self, ())]

    def take(self, session: AsyncSession | Session) -> list[Any]:
        """The items, removed (`then` will not see them)."""
        return [item for _, item in _sync(session).info.pop(self, None) or ()]

    def discard(self, session: AsyncSession | Session) -> None:
        _sync(session).info.pop(self, None)


def _sync(session: AsyncSession | Session) -> Session:
    return session.sync_session if isinstance(session, AsyncSession) else session


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: nothing is committed yet
        return
    for work in _kept(session):
        entries = session.info.pop(work, None)  # None: an earlier instance's `then` took them
        if entries and work.then is not None:
            try:
                work.then(session, [item for _, item in entries])
            except Exception:  # noqa: BLE001 - committed: the caller must not see its commit fail
                log.exception("%r failed after the commit", work)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    savepoint = rolled_back_savepoint(previous_transaction)
    for work in _kept(session):
        if savepoint is None:
            del session.info[work]
        else:
            session.info[work] = [entry for entry in session.info[work] if not _within(entry[0], savepoint)]


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        for work in _kept(session):
            session.info.pop(work, None)


def _kept(session: Session) -> list[AtCommit]:
    return [key for key in session.info if isinstance(key, AtCommit)]


def _within(transaction: SessionTransaction | None, savepoint: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is savepoint:
            return True
        transaction = transaction.parent
    return False


_PG = asyncpg_dialect()
# At most this many parameters in the one statement (asyncpg takes 32,767): every shape (targets, columns, row
# counts) is a statement text that SQLAlchemy's cache, asyncpg's per-connection cache and PostgreSQL each keep,
# and with 2,000 a 50,000-lead burst's shapes took the API from 150 to 330 MB. A routing batch of ~20 leads or
# an intake batch of ~38 fits; beyond, a statement per target, as on SQLite (batches that big amortize it).
MAX_STAGED_PARAMETERS = 500
_STAGED = AtCommit("db:staged_writes")  # (table or _Update, row), in the order staged; written by `_write_staged`
_NOTIFY = AtCommit("db:notify_at_commit")  # PostgreSQL channels to notify when the transaction commits


@dataclass(frozen=True)
class _Update:
    """Staged rows of `table` that update the row whose `key` column they carry."""

    table: Table
    key: str


@dataclass(frozen=True)
class _Upsert(_Update):
    """Staged rows of `table` inserted, or updating the row with the same `key` (a unique column)."""


def stage_insert(session: AsyncSession | Session, model: type[DeclarativeBase], row: dict[str, Any]) -> None:
    """Insert `row` into `model`'s table when the session's transaction commits, together with every other
    row staged in it (outbox events and timeline entries, written by the hundred and never read back in the
    transaction that writes them): no ORM object, and one statement for every table (PostgreSQL: an INSERT
    per table in data-modifying CTEs, with the commit's `NOTIFY`s, up to `MAX_STAGED_PARAMETERS`; SQLite, or
    past that: an executemany INSERT per table).
    Rows keep the order they were staged in within their table (an outbox row's id is its publishing order);
    pending ORM objects are flushed first, so a staged row may refer to them (a staged row referring to a row
    staged in another table is safe on PostgreSQL's single statement only: elsewhere tables go in the order
    first staged). A rollback drops the rows staged in what it rolls back: the transaction, or a savepoint and
    the savepoints inside it."""
    _stage(session, cast(Table, model.__table__), row)


def stage_update(session: AsyncSession | Session, model: type[DeclarativeBase], key: str, row: dict[str, Any]) -> None:
    """Update `model`'s row whose `key` column is `row[key]` with the rest of `row` when the transaction commits,
    in the statement that writes the staged inserts (see `stage_insert`). Runs after the ORM's flush, so it
    wins over a change the ORM makes to the same columns later in the transaction: keep the ORM object's
    committed state equal to the staged values (`set_committed_value`), and commit soon after."""
    _stage(session, _Update(cast(Table, model.__table__), key), row)


def stage_upsert(session: AsyncSession | Session, model: type[DeclarativeBase], key: str, row: dict[str, Any]) -> None:
    """Insert `row`, or update the row with the same `key` (a unique column) with the rest of it, when the
    transaction commits, in the statement that writes the staged inserts (see `stage_insert`)."""
    _stage(session, _Upsert(cast(Table, model.__table__), key), row)


def _stage(session: AsyncSession | Session, target: Table | _Update, row: dict[str, Any]) -> None:
    _STAGED.add(session, (target, row))


def notify_at_commit(session: Session, channel: str) -> None:
    """PostgreSQL: `NOTIFY channel` when this transaction commits (never for a rollback), sent with the staged
    rows' statement when there are any. Call it from a `before_commit` listener registered with `insert=True`
    (it must run before the one here that writes the staged rows) or earlier in the transaction."""
    if channel not in _NOTIFY.items(session):
        _NOTIFY.add(session, channel)


@event.listens_for(Session, "before_commit")
def _write_staged(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint's commit: its rows wait for the transaction's
        return
    staged: list[tuple[Table | _Update, dict[str, Any]]] = _STAGED.take(session)
    channels: list[str] = _NOTIFY.take(session)
    if not staged and not channels:
        return
    targets: dict[Table | _Update, list[dict[str, Any]]] = {}
    for target, row in staged:
        targets.setdefault(target, []).append(row)
    if targets:
        session.flush()
    regular = _regular(targets)
    postgres = session.get_bind().dialect.name == "postgresql"
    if not postgres or not regular or _parameters(targets) > MAX_STAGED_PARAMETERS:
        # SQLite (no data-modifying CTEs, no NOTIFY), or too many parameters for one statement: a statement per
        # target. Rows one statement cannot carry: a statement per run of rows staged one after another for
        # the same target and columns, in that order.
        runs = list(targets.items()) if regular else _runs(staged)
        for target, rows in runs:
            _execute_each(session, target, rows)
        targets = {}
        if not channels:
            return
    shape = tuple((target, tuple(rows[0]), len(rows)) for target, rows in targets.items())
    params = {f"s{i}_{r}_{column}": row[column] for i, rows in enumerate(targets.values())
              for r, row in enumerate(rows) for column in row}
    params.update({f"n{j}": channel for j, channel in enumerate(sorted(channels or ()))})
    session.execute(_staged_statement(shape, len(channels or ())), params)


def _parameters(targets: dict[Table | _Update, list[dict[str, Any]]]) -> int:
    return sum(len(rows) * len(rows[0]) for rows in targets.values())


def _regular(targets: dict[Table | _Update, list[dict[str, Any]]]) -> bool:
    """Whether a statement per target (or one statement with a CTE per target) writes these rows as staged:
    every target's rows set the same columns (an update or upsert at least one besides its key); each table
    under one target (all CTEs see one snapshot: an update of a row another CTE inserts would not find it);
    no row updated or upserted twice (one statement cannot say which comes last; the upsert fails on
    PostgreSQL)."""
    tables = [target.table if isinstance(target, _Update) else target for target in targets]
    if len(set(tables)) < len(tables):
        return False
    for target, rows in targets.items():
        columns = set(rows[0])
        if any(set(row) != columns for row in rows):
            return False
        if isinstance(target, _Update) and (columns == {target.key}
                                            or len({row[target.key] for row in rows}) < len(rows)):
            return False
    return True


_Run = tuple[Table | _Update, list[dict[str, Any]]]


def _runs(staged: list[tuple[Table | _Update, dict[str, Any]]]) -> list[_Run]:
    """The staged rows in the order staged, cut where the target or the columns change."""
    runs: list[_Run] = []
    for target, row in staged:
        if runs and runs[-1][0] == target and runs[-1][1][0].keys() == row.keys():
            runs[-1][1].append(row)
        else:
            runs.append((target, [row]))
    return runs


def _execute_each(session: Session, target: Table | _Update, rows: list[dict[str, Any]]) -> None:
    """Rows of one target that set the same columns, in one statement (an executemany, whose rows run in
    order: a row updated twice ends as staged last)."""
    if isinstance(target, Table):
        session.execute(insert(target), rows)
    elif isinstance(target, _Upsert):
        postgres = session.get_bind().dialect.name == "postgresql"
        session.execute(_upsert_statement(target, tuple(rows[0]), postgres), rows)
    else:  # bind names apart from the columns' (SQLAlchemy keeps those for the SET clause)
        others = tuple(column for column in rows[0] if column != target.key)
        if others:
            session.execute(_update_statement(target, others),
                            [{"_key": row[target.key], **{f"_v_{c}": row[c] for c in others}} for row in rows])


# Built once per target and columns (SQLite writes every routing batch's state and leads this way, and
# building a statement costs more than running it).
@functools.lru_cache(maxsize=64)
def _upsert_statement(target: _Update, columns: tuple[str, ...], postgres: bool) -> Any:
    values = (postgresql.insert if postgres else sqlite.insert)(target.table)
    others = [column for column in columns if column != target.key]
    if not others:
        return values.on_conflict_do_nothing(index_elements=[target.key])
    return values.on_conflict_do_update(index_elements=[target.key],
                                        set_={column: values.excluded[column] for column in others})


@functools.lru_cache(maxsize=64)
def _update_statement(target: _Update, others: tuple[str, ...]) -> Any:
    table = target.table
    return update(table).where(table.c[target.key] == bindparam("_key")).values(
        {column: bindparam(f"_v_{column}") for column in others})


@functools.lru_cache(maxsize=64)
def _staged_statement(shape: tuple[tuple[Table | _Update, tuple[str, ...], int], ...], notifies: int) -> Any:
    """PostgreSQL: one statement for the rows of every target (an INSERT per table, or an UPDATE .. FROM
    VALUES, each a data-modifying CTE, which PostgreSQL runs to completion whether or not anything refers to
    it; a multi-row VALUES takes its ids in the order listed; an upsert is an INSERT .. ON CONFLICT) and
    `notifies` `pg_notify` calls; parameters `s<target>_<row>_<column>` and `n<channel>`. Written as text
    with typed parameters once per shape (targets, columns, row counts): SQLAlchemy caches no multi-row
    INSERT and would compile one a commit."""
    quote = _PG.identifier_preparer
    ctes, binds = [], []
    for i, (target, columns, count) in enumerate(shape):
        table = target.table if isinstance(target, _Update) else target
        rows = []
        for r in range(count):
            names = [f"s{i}_{r}_{column}" for column in columns]
            binds += [bindparam(name, type_=table.c[column].type) for name, column in zip(names, columns, strict=True)]
            rows.append("(" + ", ".join(f":{name}" for name in names) + ")")
        name, listed = quote.format_table(table), ", ".join(quote.quote(c) for c in columns)
        if isinstance(target, _Upsert):
            sets = ", ".join(f"{quote.quote(c)} = excluded.{quote.quote(c)}" for c in columns if c != target.key)
            ctes.append(f"staged_{i} AS (INSERT INTO {name} ({listed}) VALUES {', '.join(rows)} "
                        f"ON CONFLICT ({quote.quote(target.key)}) DO UPDATE SET {sets})")
        elif isinstance(target, _Update):
            key = quote.quote(target.key)
            sets = ", ".join(f"{quote.quote(c)} = v.{quote.quote(c)}" for c in columns if c != target.key)
            ctes.append(f"staged_{i} AS (UPDATE {name} SET {sets} FROM (VALUES {', '.join(rows)}) AS v ({listed}) "
                        f"WHERE {name}.{key} = v.{key})")
        else:
            ctes.append(f"staged_{i} AS (INSERT INTO {name} ({listed}) VALUES {', '.join(rows)})")
    binds += [bindparam(f"n{j}", type_=String) for j in range(notifies)]
    selected = ", ".join(f"pg_notify(:n{j}, '')" for j in range(notifies)) or "1"
    return text((f"WITH {', '.join(ctes)} " if ctes else "") + f"SELECT {selected}").bindparams(*binds)
