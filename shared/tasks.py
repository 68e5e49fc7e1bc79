"""Named background tasks with a clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskGroup:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._report)
        self.tasks.append(task)
        return task

    @staticmethod
    def _report(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s died", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        for task in reversed(self.tasks):
            task.cancel()
        for task in reversed(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()


async def retry_forever(what: str, coro_factory: Any, *, max_backoff: float = 10.0) -> Any:
    """Await `coro_factory()` until it succeeds (e.g. reaching a broker that is still starting)."""
    backoff = 0.25
    while True:
        try:
            return await coro_factory()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged and retried
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)


async def every(interval_s: float, what: str, work: Callable[[], Awaitable[Any]], *, first_after_s: float | None = None
                ) -> None:
    """Run `work` every `interval_s` for ever. A failure is logged and the next round comes as planned:
    one database hiccup must not end a periodic task for good."""
    await asyncio.sleep(interval_s if first_after_s is None else first_after_s)
    while True:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %.0fs", what, interval_s)
        await asyncio.sleep(interval_s)
