"""Wake a waiting task when a transaction that staged work for it commits.

A producer of work (an outbox row, a webhook delivery) marks the session; once that session commits, the
signal is set and the task waiting on it (the relay, the delivery worker) runs at once instead of at its
next poll. A rollback marks nothing. Polling stays as the fallback for work committed by other processes.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from shared.db import rolled_back_savepoint

_signals: dict[str, CommitSignal] = {}


class CommitSignal:
    def __init__(self, name: str) -> None:
        self.key = f"wake:{name}"
        self.event: asyncio.Event | None = None  # made by the waiting task's loop
        _signals[self.key] = self

    def mark(self, session: AsyncSession | Session) -> None:
        """Set the signal once this session's transaction commits."""
        sync = session.sync_session if isinstance(session, AsyncSession) else session
        sync.info[self.key] = True

    def unmark(self, session: AsyncSession | Session) -> None:
        """Take the mark back: the caller has a marked transaction follow this one's commit (were that one
        lost, to a crash or a shutdown, the waiting task's poll finds the work)."""
        sync = session.sync_session if isinstance(session, AsyncSession) else session
        sync.info.pop(self.key, None)

    def set(self) -> None:
        """Wake the waiting task now (work committed elsewhere, e.g. a PostgreSQL notification)."""
        if self.event is not None:
            self.event.set()

    async def wait(self, at_most_s: float) -> None:
        """Until a marked transaction commits, or `at_most_s` seconds, whichever is first; then re-arm."""
        if self.event is None:
            self.event = asyncio.Event()
        try:
            await asyncio.wait_for(self.event.wait(), at_most_s)
        except TimeoutError:
            pass
        self.event.clear()


OUTBOX_COMMITTED = CommitSignal("outbox")  # wakes this process's relay when a transaction with events commits


@sa_event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: nothing is committed yet
        return
    for key in [k for k in session.info if isinstance(k, str) and k.startswith("wake:")]:
        session.info.pop(key, None)
        signal = _signals.get(key)
        if signal is not None and signal.event is not None:
            signal.event.set()


@sa_event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    """The transaction rolled back: nothing to wake for. A savepoint's rollback keeps the mark: work staged
    before the savepoint still commits with the transaction (work staged inside it is dropped with it, and
    the commit then wakes the task for nothing, which costs it one look)."""
    if rolled_back_savepoint(previous_transaction) is not None:
        return
    _forget(session)


@sa_event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that ended without a commit or a rollback event (a session closed with it open, a
    ROLLBACK that failed): its marks must not wake anyone for the session's next transaction."""
    if transaction.parent is None:
        _forget(session)


def _forget(session: Session) -> None:
    for key in [k for k in session.info if isinstance(k, str) and k.startswith("wake:")]:
        session.info.pop(key, None)
