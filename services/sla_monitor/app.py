"""The sla_monitor service (port 8001). This first cut serves health, readiness and metrics; the SLA
clocks, alerts and recall land with the SLA monitor issue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from shared.config import Settings, get_settings
from shared.db import create_engine, session_factory
from shared.errors import install_error_handlers
from shared.observability import RequestMetrics, install_probes


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="Leadrouter: sla_monitor", version="1.0.0", lifespan=lifespan,
                  description="Lead-handling SLAs: clocks, breach alerts, recall. Contract: API.md, v1.")
    app.state.settings = settings
    install_error_handlers(app)
    install_probes(app, registry)
    app.add_middleware(RequestMetrics, registry=registry)
    return app
