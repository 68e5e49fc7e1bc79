"""Wake a waiting task when a transaction that staged work for it commits.

A producer of work (an outbox row, a webhook delivery) marks the session; once that session commits, the
signal is set and the task waiting on it (the relay, the delivery worker) runs at once instead of at its
next poll. A rollback marks nothing. Polling stays as the fallback for work committed by other processes.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared.db import AtCommit


class CommitSignal:
    def __init__(self, name: str) -> None:
        self.marks = AtCommit(f"wake:{name}", lambda _session, _marks: self.set())
        self.event: asyncio.Event | None = None  # made by the waiting task's loop

    def mark(self, session: AsyncSession | Session) -> None:
        """Set the signal once this session's transaction commits (a mark made in a savepoint that rolls back
        is taken back with it; work staged before the savepoint, and its mark, still commit)."""
        if not self.marked(session):
            self.marks.add(session)

    def marked(self, session: AsyncSession | Session) -> bool:
        return bool(self.marks.items(session))

    def unmark(self, session: AsyncSession | Session) -> None:
        """Take the mark back: the caller has a marked transaction follow this one's commit (were that one
        lost, to a crash or a shutdown, the waiting task's poll finds the work)."""
        self.marks.discard(session)

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
