"""Prometheus metrics per app (own registry, so several apps can live in one test process), request
counting as a plain ASGI middleware, and the health probes both services share."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.config import Settings
from shared.db import ping

log = logging.getLogger(__name__)


# One histogram for the whole pipeline, registered in every app's registry: where a lead's time goes.
STAGE_SECONDS = Histogram(
    "leadrouter_stage_seconds",
    "Seconds spent per pipeline stage: commit (webhook received to its leads committed), relay (an event "
    "committed to acknowledged by the broker), consume (an event on the broker to handled and committed by a "
    "consumer), decide (a routing batch, start to end)", ["stage"], registry=None,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


# The collector's pauses: every lead in flight in the process waits them out (see `shared.serve.tune_gc`).
GC_PAUSE_SECONDS = Histogram(
    "leadrouter_gc_pause_seconds", "Seconds this process stopped for garbage collection, by generation collected",
    ["generation"], registry=None, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
_GC_PAUSES = [GC_PAUSE_SECONDS.labels(str(generation)) for generation in range(3)]
_gc_started = 0.0


def _time_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
    else:
        _GC_PAUSES[info["generation"]].observe(time.perf_counter() - _gc_started)


gc.callbacks.append(_time_gc)


# PostgreSQL: 1 while this process's outbox relay is the one publishing the database's events.
RELAY_LEADING = Gauge("leadrouter_outbox_relay_leading", "PostgreSQL: 1 while this process's outbox relay publishes "
                      "every process's events (one leads, the others stand by); always 0 on SQLite, where a lock "
                      "file picks the relay of each round", registry=None)


# Database round trips, counted in every process: what a lead costs in statements and transactions (the
# bench divides them by leads; they hardly vary from run to run, unlike times on a shared machine).
DB_STATEMENTS = Counter("leadrouter_db_statements", "Statements sent to the database (an executemany counts "
                        "once: one round trip); BEGIN and COMMIT are not statements here", registry=None)
DB_TRANSACTIONS = Counter("leadrouter_db_transactions", "Database transactions ended, by outcome (each also "
                          "cost a BEGIN and its COMMIT or ROLLBACK)", ["outcome"], registry=None)
_COMMITS, _ROLLBACKS = DB_TRANSACTIONS.labels("commit"), DB_TRANSACTIONS.labels("rollback")


@sa_event.listens_for(Engine, "before_cursor_execute")
def _count_statement(*_: Any) -> None:
    DB_STATEMENTS.inc()


@sa_event.listens_for(Engine, "commit")
def _count_commit(*_: Any) -> None:
    _COMMITS.inc()


@sa_event.listens_for(Engine, "rollback")
def _count_rollback(*_: Any) -> None:
    _ROLLBACKS.inc()


def stage(name: str) -> Any:
    """The histogram of one stage: `stage("relay").observe(seconds)`."""
    return STAGE_SECONDS.labels(name)


class RequestMetrics:
    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                                 registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def _send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.latency.labels(scope["method"], route).observe(time.perf_counter() - start)


async def broker_reachable(bootstrap: str, wait_s: float = 1.0) -> bool:
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), wait_s)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False


def install_probes(app: FastAPI, registry: CollectorRegistry,
                   refresh: Callable[[], Awaitable[None]] | None = None) -> None:
    for collector in (STAGE_SECONDS, GC_PAUSE_SECONDS, RELAY_LEADING, DB_STATEMENTS, DB_TRANSACTIONS):
        registry.register(collector)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Database or broker unreachable"}})
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the database answers and the Kafka broker is reachable; 503 otherwise."""
        settings: Settings = request.app.state.settings
        engine: AsyncEngine = request.app.state.engine
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(engine), 2.0)
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            checks["database"] = f"unreachable: {type(exc).__name__}"
        checks["kafka"] = "ok" if await broker_reachable(settings.bootstrap) else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus text format."""
        if refresh is not None:
            try:
                await refresh()
            except Exception:  # noqa: BLE001 - scrape what we have rather than fail the scrape
                log.warning("metrics refresh failed", exc_info=True)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
