"""The lead_router service: HTTP API, outbox relay, router consumer and reconciler in one process.

Each background part can be switched off (`LEADROUTER_RUN_RELAY`, `LEADROUTER_RUN_ROUTER`) so that
instances can be split by role; routing scales out through the consumer group.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from aiokafka.errors import KafkaError
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.intake.direct import DirectIntake
from services.lead_router.intake.endpoints import router as intake_router
from services.lead_router.intake.service import forgettable_receipts
from services.lead_router.intake.writer import IngestWriter
from services.lead_router.lead.endpoints import admin_router as leads_router
from services.lead_router.lead.endpoints import partner_router
from services.lead_router.lead.recall import sla_handlers
from services.lead_router.lead.states import STATUSES
from services.lead_router.metrics.endpoints import admin_router as metrics_router
from services.lead_router.metrics.endpoints import partner_router as scorecard_router
from services.lead_router.metrics.handlers import handle_clock_ended
from services.lead_router.notify.endpoints import router as notify_router
from services.lead_router.notify.repository import DeliveryRepository, ended_before
from services.lead_router.notify.service import encrypt_stored_secrets
from services.lead_router.notify.worker import DeliveryWorker
from services.lead_router.partner.endpoints import router as partners_router
from services.lead_router.routing.eager import IntakeRouter
from services.lead_router.routing.endpoints import router as routing_router
from services.lead_router.routing.handlers import reconcile_forever, router_batch, router_handlers
from services.lead_router.source.endpoints import router as sources_router
from services.lead_router.source.service import SourceCache
from services.lead_router.ui.endpoints import router as ui_router
from shared.config import Settings, get_settings
from shared.crypto import has_key
from shared.db import create_engine, delete_in_batches, session_factory
from shared.errors import install_error_handlers
from shared.kafka import ConsumerLoop, GroupLag, ensure_topics
from shared.limits import BodyGuard
from shared.models import Lead, WebhookDelivery, WebhookReceipt, utcnow
from shared.observability import RequestMetrics, install_probes
from shared.outbox import backlog, dead_letters_waiting, start_relay
from shared.tasks import TaskGroup, every, retry_forever

log = logging.getLogger("lead_router")

ROUTER_GROUP = "lead-router"
SIMULATE_MAX_BYTES = 2 * 1024 * 1024  # up to 1,000 leads to simulate


async def _run_kafka_parts(app: FastAPI, settings: Settings) -> None:
    """Reach the broker (it may still be starting), then run the relay and the router consumer."""
    await retry_forever("creating topics", lambda: ensure_topics(settings))
    group: TaskGroup = app.state.tasks
    if settings.run_relay:
        # The monitor, or a router worker with LEADROUTER_RELAY_PREFERRED, leads the publishing; the others stand
        # by. Intake and routing are the path from webhook to offer: a relay in their event loop made every one
        # of their queries wait.
        await start_relay(app.state, settings, group, "outbox-relay", rank=0)
    if settings.run_router:
        # While the APIs route new leads on intake, this consumer routes only what they left, rejections and
        # recalls: it waits for records as long as the consumers off the path to an offer do.
        loop = ConsumerLoop(settings, app.state.sessions, name="router", topics=[settings.leads_topic],
                            group_id=router_group(settings),
                            handlers=router_handlers(settings), batch=router_batch(settings),
                            background=settings.route_on_intake)
        app.state.consumer = loop
        group.start("router-consumer", loop.run())
        recalls = ConsumerLoop(settings, app.state.sessions, name="recall", topics=[settings.sla_topic],
                               group_id=f"{settings.topic_prefix}.{ROUTER_GROUP}-recall",
                               handlers={**sla_handlers(settings), "sla.clock_ended": handle_clock_ended},
                               gather=True)
        group.start("recall-consumer", recalls.run())


HISTORY_RETENTION = timedelta(days=30)


async def purge_history(sessions: async_sessionmaker[AsyncSession],
                        retention: timedelta = HISTORY_RETENTION) -> tuple[int, int]:
    """Delete partner notifications that ended more than `retention` ago (the admin's delivery log keeps
    30 days) and webhook ids received before then; returns (deliveries, webhook ids) deleted."""
    before = utcnow() - retention
    deliveries = await delete_in_batches(sessions, WebhookDelivery, ended_before(before))
    return deliveries, await delete_in_batches(sessions, WebhookReceipt, *forgettable_receipts(before))


def router_group(settings: Settings) -> str:
    return f"{settings.topic_prefix}.{ROUTER_GROUP}"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    registry = CollectorRegistry()
    leads_by_status = Gauge("leadrouter_leads", "Leads by status", ["status"], registry=registry)
    outbox_backlog = Gauge("leadrouter_outbox_backlog", "Outbox rows not yet published", registry=registry)
    dead_letters = Gauge("leadrouter_dead_letters", "Events parked after failing every attempt, not replayed yet",
                         registry=registry)
    consumer_lag = Gauge("leadrouter_router_consumer_lag", "Leads-topic records the router group has not committed",
                         registry=registry)
    published = Gauge("leadrouter_outbox_published", "Events published by this process's relay",
                      registry=registry)
    webhook_attempts = Counter("leadrouter_webhook_attempts", "Partner webhook attempts by this process, by outcome",
                               ["outcome"], registry=registry)
    webhook_pending = Gauge("leadrouter_webhook_pending", "Partner notifications not delivered yet",
                            registry=registry)
    webhook_oldest = Gauge("leadrouter_webhook_oldest_pending_seconds",
                           "Age of the oldest pending partner notification (0: none)", registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.tasks = TaskGroup()
        app.state.intake_router = IntakeRouter(app.state.sessions, settings) if settings.route_on_intake else None
        app.state.ingest_writer = IngestWriter(
            app.state.sessions, settings, followup=app.state.intake_router,
            direct=DirectIntake(engine, settings) if engine.dialect.driver == "asyncpg" else None)
        app.state.sources = SourceCache(app.state.sessions, settings)
        app.state.tasks.start("ingest-writer", app.state.ingest_writer.run())
        if app.state.intake_router is not None:
            app.state.tasks.start("intake-router", app.state.intake_router.run())
        app.state.producer = app.state.relay = app.state.consumer = None
        if settings.run_relay or settings.run_router:
            app.state.tasks.start("kafka-start", _run_kafka_parts(app, settings))
        app.state.delivery_worker = DeliveryWorker(app.state.sessions, settings, attempts_counter=webhook_attempts)
        if settings.run_router:
            app.state.tasks.start("reconciler", reconcile_forever(app.state.sessions, settings))
            app.state.tasks.start("history-retention", every(3600, "purging ended deliveries and old webhook ids",
                                                             lambda: purge_history(app.state.sessions),
                                                             first_after_s=60))
            if has_key(settings):
                app.state.tasks.start("secrets-at-rest", every(3600, "encrypting signing secrets stored in clear",
                                                               lambda: encrypt_stored_secrets(app.state.sessions,
                                                                                              settings=settings),
                                                               first_after_s=0))
        if settings.run_router or settings.route_on_intake:  # where offers are made, partners are told at once
            app.state.tasks.start("webhook-delivery", app.state.delivery_worker.run())
        app.state.lag = GroupLag(settings, router_group(settings), settings.leads_topic)
        try:
            yield
        finally:
            await app.state.lag.close()
            await app.state.tasks.stop()
            await app.state.delivery_worker.close()
            if app.state.producer is not None:
                await app.state.producer.stop()
            await engine.dispose()

    async def refresh_metrics() -> None:
        async with app.state.sessions() as session:
            counts = dict((await session.execute(select(Lead.status, func.count()).group_by(Lead.status))).all())
            outbox_backlog.set(await backlog(session))
            dead_letters.set(await dead_letters_waiting(session))
            pending, oldest = await DeliveryRepository(session).pending_stats()
        webhook_pending.set(pending)
        webhook_oldest.set(max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0)
        for status in STATUSES:
            leads_by_status.labels(status).set(counts.get(status, 0))
        published.set(app.state.relay.published if app.state.relay else 0)
        try:
            consumer_lag.set(await app.state.lag.measure())
        except (KafkaError, OSError, TimeoutError):
            consumer_lag.set(float("nan"))  # broker unreachable: unknown, not zero

    app = FastAPI(title="Leadrouter: lead_router", version="1.0.0", lifespan=lifespan,
                  description="Lead intake, routing and partner responses. Contract: API.md, v1.")
    app.state.settings = settings
    install_error_handlers(app)
    install_probes(app, registry, refresh_metrics)
    for router in (intake_router, sources_router, partners_router, routing_router, leads_router, partner_router,
                   metrics_router, scorecard_router, notify_router, ui_router):
        app.include_router(router)
    app.add_middleware(BodyGuard, admin_token=lambda: app.state.settings.admin_token, open_paths=("/v1/webhooks/",),
                       limits={"/v1/webhooks/": settings.max_body_bytes, "/v1/routing/simulate": SIMULATE_MAX_BYTES})
    app.add_middleware(RequestMetrics, registry=registry)
    return app
