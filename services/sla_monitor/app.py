"""The sla_monitor service (port 8001): SLA policies, clocks, breach alerts and recall requests.

One process runs the HTTP API, the consumer of `<prefix>.leads` / `<prefix>.partners` that opens, meets
and closes clocks, the deadline scheduler that flags breaches, and its own outbox relay that publishes
`sla.breached` / `sla.resolved` to `<prefix>.sla`. `LEADROUTER_SLA_RUN_KAFKA=false` and
`LEADROUTER_SLA_RUN_SCHEDULER=false` switch the background parts off (in-process tests drive them).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.errors import KafkaError
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.sla_monitor.alert.endpoints import router as alerts_router
from services.sla_monitor.alert.schemas import ALERT_KINDS, ALERT_STATUSES, to_json
from services.sla_monitor.consumer import monitor_consumer, monitor_group
from services.sla_monitor.hub import Hub, feed_from_topic, monitor_sessions
from services.sla_monitor.policy.endpoints import router as policies_router
from services.sla_monitor.repository import SlaRepository
from services.sla_monitor.scheduler import DeadlineScheduler
from services.sla_monitor.tracker import KINDS
from shared.config import Settings, get_settings
from shared.db import create_engine
from shared.errors import install_error_handlers
from shared.kafka import GroupLag, ensure_topics
from shared.limits import BodyGuard
from shared.models import SlaAlert
from shared.observability import RequestMetrics, install_probes
from shared.outbox import RANK_DEFAULT, backlog, dead_letters_waiting, start_relay
from shared.tasks import TaskGroup, retry_forever

log = logging.getLogger("sla_monitor")


async def _run_kafka_parts(app: FastAPI, settings: Settings) -> None:
    """Reach the broker (it may still be starting), then run the relay and the consumer."""
    await retry_forever("creating topics", lambda: ensure_topics(settings))
    group: TaskGroup = app.state.tasks
    # This relay leads (PostgreSQL) unless LEADROUTER_RELAY_PREFERRED says otherwise: the monitor is off the path
    # from webhook to offer, so publishing every process's events here keeps that work out of intake's event loop.
    await start_relay(app.state, settings, group, "sla-outbox-relay", rank=RANK_DEFAULT)
    consumer = monitor_consumer(settings, app.state.sessions)
    app.state.consumer = consumer
    group.start("sla-consumer", consumer.run())
    group.start("alert-stream-feed", feed_from_topic(settings, app.state.hub))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = CollectorRegistry()
    open_clocks = Gauge("sla_open_clocks", "Open SLA clocks by kind", ["kind"], registry=registry)
    alerts = Gauge("sla_alerts", "SLA alerts by kind and status", ["kind", "status"], registry=registry)
    consumer_lag = Gauge("sla_consumer_lag", "Leads and partners records the monitor group has not committed",
                         registry=registry)
    outbox_backlog = Gauge("sla_outbox_backlog", "Outbox rows not yet published", registry=registry)
    dead_letters = Gauge("leadrouter_dead_letters", "Events parked after failing every attempt, not replayed yet",
                         registry=registry)
    heap_size = Gauge("sla_scheduler_pending", "Deadlines in the scheduler's heap", registry=registry)
    breaches = Counter("sla_breaches_flagged", "Breaches flagged by this process", ["kind"], registry=registry)
    lateness = Histogram("sla_scheduler_lateness_seconds", "Breach flagged_at - due_at", registry=registry,
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 30, 60, 300, 3600))

    def observe(alert: SlaAlert) -> None:
        breaches.labels(alert.kind).inc()
        lateness.observe(max(0.0, (alert.breached_at - alert.due_at).total_seconds()))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        hub = Hub()
        hub.serialize = to_json
        app.state.engine, app.state.hub = engine, hub
        app.state.sessions = monitor_sessions(engine, hub)
        app.state.tasks = TaskGroup()
        app.state.producer = app.state.relay = app.state.consumer = app.state.scheduler = None
        if settings.sla_run_scheduler:
            scheduler = DeadlineScheduler(app.state.sessions, settings, on_flag=observe)
            hub.on_due = scheduler.push
            app.state.scheduler = scheduler
            app.state.tasks.start("sla-scheduler", scheduler.run())
        app.state.lags = []
        if settings.sla_run_kafka:
            app.state.tasks.start("kafka-start", _run_kafka_parts(app, settings))
            app.state.lags = [GroupLag(settings, monitor_group(settings), topic)
                              for topic in (settings.leads_topic, settings.partners_topic)]
        try:
            yield
        finally:
            for lag in app.state.lags:
                await lag.close()
            await app.state.tasks.stop()
            hub.on_due = None
            if app.state.producer is not None:
                await app.state.producer.stop()
            await engine.dispose()

    async def refresh_metrics() -> None:
        async with app.state.sessions() as session:
            repo = SlaRepository(session)
            clocks = await repo.open_clock_counts()
            counts = await repo.alert_counts()
            outbox_backlog.set(await backlog(session))
            dead_letters.set(await dead_letters_waiting(session))
        for kind in KINDS:
            open_clocks.labels(kind).set(clocks.get(kind, 0))
        for kind in ALERT_KINDS:
            for status in ALERT_STATUSES:
                alerts.labels(kind, status).set(counts.get((kind, status), 0))
        try:
            consumer_lag.set(sum([await lag.measure() for lag in app.state.lags]))
        except (KafkaError, OSError, TimeoutError):
            consumer_lag.set(float("nan"))  # broker unreachable: unknown, not zero
        heap_size.set(len(app.state.scheduler.heap) if app.state.scheduler else 0)

    app = FastAPI(title="Leadrouter: sla_monitor", version="1.0.0", lifespan=lifespan,
                  description="Lead-handling SLAs: policies, clocks, breach alerts, recall. Contract: API.md, v1.")
    app.state.settings = settings
    install_error_handlers(app)
    install_probes(app, registry, refresh_metrics)
    app.include_router(policies_router)
    app.include_router(alerts_router)
    app.add_middleware(BodyGuard, admin_token=lambda: app.state.settings.admin_token, limits={})
    app.add_middleware(RequestMetrics, registry=registry)
    return app
