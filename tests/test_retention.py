"""Tables that would grow for ever are trimmed, and the periodic task doing it survives its failures."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import event, update

from services.lead_router.app import purge_history
from shared.db import delete_in_batches
from shared.models import (
    Lead,
    OutboxMessage,
    ProcessedEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookReceipt,
    utcnow,
)
from shared.outbox import purge_old
from shared.tasks import every
from tests.fixtures.builders import make_partner, post_lead, rows


async def test_old_published_rows_and_processed_ids_go(app: FastAPI) -> None:
    now = utcnow()
    old, recent = now - timedelta(days=8), now - timedelta(days=6)
    async with app.state.sessions() as session, session.begin():
        for i, (created, sent) in enumerate([(old, old), (old, None), (recent, recent), (old, recent)]):
            session.add(OutboxMessage(event_id=f"e{i}", topic="t", key="k", type="x", payload=b"{}",
                                      created_at=created, sent_at=sent))
        session.add_all([ProcessedEvent(consumer="c", event_id="old", processed_at=old),
                         ProcessedEvent(consumer="c", event_id="new", processed_at=recent)])
    assert await purge_old(app.state.sessions) == (1, 1)
    assert sorted(r.event_id for r in await rows(app, OutboxMessage)) == ["e1", "e2", "e3"]  # e1: never sent
    assert [r.event_id for r in await rows(app, ProcessedEvent)] == ["new"]


async def test_purges_delete_in_batches_until_none_is_left(app: FastAPI) -> None:
    """Each batch its own transaction (a first purge of a large, old table), walking the primary key, single or
    composite; rows not matching stay, wherever they lie."""
    async with app.state.sessions() as session, session.begin():
        session.add_all([ProcessedEvent(consumer="batch", event_id=f"e{i}", processed_at=utcnow()) for i in range(7)])
        session.add_all([OutboxMessage(event_id=f"b{i}", topic="batch", key="k", type="x", payload=b"{}",
                                       created_at=utcnow(), sent_at=utcnow()) for i in range(5)])
    transactions = TransactionCount(app)
    assert await delete_in_batches(app.state.sessions, ProcessedEvent, ProcessedEvent.consumer == "batch",
                                   ProcessedEvent.event_id != "e3", batch=2) == 6
    assert transactions.count == 4  # 2 + 2 + 2 + the one that found none left
    assert [r.event_id for r in await rows(app, ProcessedEvent, ProcessedEvent.consumer == "batch")] == ["e3"]
    assert await delete_in_batches(app.state.sessions, OutboxMessage, OutboxMessage.topic == "batch", batch=2) == 5
    assert await rows(app, OutboxMessage, OutboxMessage.topic == "batch") == []


class TransactionCount:
    def __init__(self, app: FastAPI) -> None:
        self.count = 0
        event.listen(app.state.engine.sync_engine, "commit", self.committed)

    def committed(self, _connection: object) -> None:
        self.count += 1


async def test_ended_notifications_and_old_webhook_ids_go_after_30_days(
        app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """A delivery goes 30 days after it ended (delivered, or its last retry window closed), its attempts with
    it; a pending one never. A webhook-id is forgotten 30 days after it came once its lead is closed (a late
    redelivery still finds the lead by external id, and a closed lead does not change); an open lead's stays."""
    await make_partner(client, admin, "p1")
    old, recent, now = utcnow() - timedelta(days=31), utcnow() - timedelta(days=29), utcnow()
    deliveries = {  # delivery_id: (status, delivered_at, give_up_at)
        "delivered-old": ("delivered", old, old), "delivered-recent": ("delivered", recent, old),
        "failed-old": ("failed", None, old), "failed-retried": ("failed", None, recent),
        "disabled-old": ("disabled", None, old), "pending-old": ("pending", None, old)}
    async with app.state.sessions() as session, session.begin():
        for delivery_id, (status, delivered_at, give_up_at) in deliveries.items():
            session.add(WebhookDelivery(delivery_id=delivery_id, partner_id="p1", lead_id="l", type="x",
                                        status=status, payload={}, attempts=1, give_up_at=give_up_at,
                                        delivered_at=delivered_at, created_at=old, next_attempt_at=now))
        await session.flush()
        session.add_all([WebhookAttempt(delivery_id=d, at=old, status_code=500) for d in deliveries])
    closed = (await post_lead(client, headers={"webhook-id": "msg-old"}, external_id="a", email="a@x.com")).json()
    await post_lead(client, headers={"webhook-id": "msg-open"}, external_id="b", email="b@x.com")
    await post_lead(client, headers={"webhook-id": "msg-new"}, external_id="c", email="c@x.com")
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(WebhookReceipt).where(WebhookReceipt.webhook_id.in_(("msg-old", "msg-open")))
                              .values(received_at=old))
        await session.execute(update(Lead).where(Lead.lead_id == closed["lead_id"]).values(status="lost"))

    assert await purge_history(app.state.sessions) == (3, 1)
    left = {"delivered-recent", "failed-retried", "pending-old"}
    assert {d.delivery_id for d in await rows(app, WebhookDelivery)} == left
    assert {a.delivery_id for a in await rows(app, WebhookAttempt)} == left
    assert sorted(r.webhook_id for r in await rows(app, WebhookReceipt)) == ["msg-new", "msg-open"]  # open: kept
    again = await post_lead(client, headers={"webhook-id": "msg-old"}, external_id="a", email="a@x.com", score=5)
    assert again.json() == {"lead_id": closed["lead_id"], "status": "lost", "duplicate": True}  # by external_id
    assert [lead.score for lead in await rows(app, Lead, Lead.lead_id == closed["lead_id"])] == [82]  # unchanged


async def test_a_periodic_task_outlives_its_failures() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database went away")

    task = asyncio.create_task(every(0.01, "flaky work", flaky, first_after_s=0))
    try:
        for _ in range(200):
            if calls >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert calls >= 3 and not task.done() or task.cancelled()
