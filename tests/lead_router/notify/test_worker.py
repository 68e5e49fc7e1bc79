"""Delivery of partner notifications to a real HTTP receiver: retries, Retry-After, signatures, 410, refused
addresses, and a worker that died holding a claim."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.lead_router.notify.service import encrypt_stored_secrets, new_secret
from services.lead_router.notify.worker import DeliveryWorker, retry_after_s
from shared.config import Settings
from shared.crypto import decrypt, encrypt
from shared.models import Partner, WebhookDelivery, utcnow
from tests.fixtures.builders import lead_body, make_partner
from tests.lead_router.notify.conftest import Receiver
from tests.lead_router.notify.helpers import attempts, deliveries, offered, until_settled, webhook_partner, worker

CONTACT = {k: v for k, v in lead_body().items() if k in ("email", "first_name", "last_name", "phone", "title")}


async def test_retried_until_delivered_once_signed_without_contact(app: FastAPI, client: httpx.AsyncClient,
                                                                  admin: dict[str, str], receiver: Receiver) -> None:
    receiver.script = [(500, {}), (429, {"Retry-After": "1"}), (200, {})]
    old_secret = await webhook_partner(client, admin, "alpha", receiver.url)
    rotated = await client.post("/v1/partners/alpha/webhook-secret", headers=admin)
    secret = rotated.json()["secret"]
    assert secret != old_secret and secret.startswith("whsec_")
    lead_id = await offered(app, client)
    [staged] = await deliveries(app)
    assert (staged.status, staged.lead_id, staged.type) == ("pending", lead_id, "leadrouter.lead.offered")

    delivery = await until_settled(app, staged.delivery_id)
    assert delivery.status == "delivered" and delivery.delivered_at is not None
    for _ in range(3):  # nothing is sent again after the 200
        assert await worker(app).run_once() == 0
    assert len(receiver.requests) == 3

    tries = await attempts(app, staged.delivery_id)
    assert [a.status_code for a in tries] == [500, 429, 200]
    assert (tries[2].at - tries[1].at).total_seconds() >= 0.95  # Retry-After: 1 honoured
    assert delivery.attempts == 3 and delivery.last_status_code == 200

    last = receiver.requests[-1]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {staged.delivery_id}
    assert {r.body for r in receiver.requests} == {last.body}
    Webhook(secret).verify(last.body, last.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old_secret).verify(last.body, last.headers)
    for value in CONTACT.values():
        assert str(value) not in last.body
    event = orjson.loads(last.body)
    assert {k: event[k] for k in ("specversion", "id", "type", "source", "subject")} == {
        "specversion": "1.0", "id": staged.delivery_id, "type": "leadrouter.lead.offered",
        "source": "/lead-router", "subject": lead_id}
    data = event["data"]
    assert data["lead_id"] == lead_id and data["company"]["name"] == "Example Health"
    assert (data["industry"], data["region"], data["product"]) == ("healthcare", "CA", "storage")
    assert (data["estimated_value"], data["score"]) == (120000, 82) and data["offered_at"]

    listed = (await client.get("/v1/partners/alpha/deliveries", headers=admin)).json()["items"]
    assert listed == [{"delivery_id": staged.delivery_id, "type": "leadrouter.lead.offered", "lead_id": lead_id,
                       "status": "delivered", "attempts": 3, "last_status_code": 200, "last_error": None,
                       "next_attempt_at": None, "delivered_at": listed[0]["delivered_at"]}]
    metrics = (await client.get("/metrics")).text
    assert 'leadrouter_webhook_attempts_total{outcome="delivered"} 1.0' in metrics
    assert 'leadrouter_webhook_attempts_total{outcome="http_error"} 2.0' in metrics
    assert "leadrouter_webhook_pending 0.0" in metrics


async def test_gone_turns_the_webhook_off_until_the_url_is_set_again(app: FastAPI, client: httpx.AsyncClient,
                                                                     admin: dict[str, str],
                                                                     receiver: Receiver) -> None:
    receiver.script = [(410, {})]
    await webhook_partner(client, admin, "alpha", receiver.url)
    await offered(app, client)
    [first] = await deliveries(app)
    assert (await until_settled(app, first.delivery_id)).status == "disabled"
    partner = (await client.get("/v1/partners/alpha", headers=admin)).json()
    assert partner["webhook_enabled"] is False and partner["webhook_url"] == receiver.url

    await offered(app, client)  # a later offer is logged, disabled, and not sent
    later = (await deliveries(app))[-1]
    assert later.delivery_id != first.delivery_id and later.status == "disabled"
    assert await worker(app).run_once() == 0
    assert len(receiver.requests) == 1
    listed = (await client.get("/v1/partners/alpha/deliveries", headers=admin)).json()["items"]
    assert [(d["status"], d["last_status_code"]) for d in listed] == [("disabled", None), ("disabled", 410)]

    await make_partner(client, admin, "alpha", webhook_url=receiver.url)
    assert (await client.get("/v1/partners/alpha", headers=admin)).json()["webhook_enabled"] is True
    retried = await client.post(f"/v1/partners/alpha/deliveries/{later.delivery_id}/retry", headers=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert (await until_settled(app, later.delivery_id)).status == "delivered"
    assert len(receiver.requests) == 2


async def test_private_address_refused_unless_allowed(app: FastAPI, client: httpx.AsyncClient,
                                                      admin: dict[str, str], receiver: Receiver,
                                                      settings: Settings) -> None:
    assert Settings(database_url=settings.database_url).webhook_allow_private is False  # the default
    await webhook_partner(client, admin, "alpha", receiver.url)
    await offered(app, client)
    [staged] = await deliveries(app)
    strict = DeliveryWorker(app.state.sessions, settings.model_copy(update={"webhook_allow_private": False}))
    try:
        assert await strict.run_once() == 1
    finally:
        await strict.close()
    assert receiver.requests == []
    [delivery] = await deliveries(app)
    [attempt] = await attempts(app, staged.delivery_id)
    assert attempt.status_code is None and "127.0.0.1" in (attempt.error or "") and "refused" in (attempt.error or "")
    # It stays pending, retried with backoff until its 24 hours are up (the URL may be corrected meanwhile).
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, attempt.error)


async def test_without_a_secret_nothing_is_sent_until_one_is_made(app: FastAPI, client: httpx.AsyncClient,
                                                                  admin: dict[str, str], receiver: Receiver) -> None:
    await make_partner(client, admin, "alpha", webhook_url=receiver.url)
    await offered(app, client)
    [staged] = await deliveries(app)
    await worker(app).run_once()
    assert receiver.requests == []
    [attempt] = await attempts(app, staged.delivery_id)
    assert "no signing secret" in (attempt.error or "")
    secret = (await client.post("/v1/partners/alpha/webhook-secret", headers=admin)).json()["secret"]
    assert (await until_settled(app, staged.delivery_id)).status == "delivered"
    Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)


async def test_a_secret_stored_before_encryption_signs_and_an_unreadable_one_is_reported(
        app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], receiver: Receiver) -> None:
    """A secret stored in clear by an earlier version still signs until it is replaced; one encrypted with a
    key no longer configured is not sent, and every try says why."""
    await make_partner(client, admin, "alpha", webhook_url=receiver.url)
    legacy = new_secret()
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(Partner).where(Partner.partner_id == "alpha").values(webhook_secret=legacy))
    await offered(app, client)
    [first] = await deliveries(app)
    assert (await until_settled(app, first.delivery_id)).status == "delivered"
    Webhook(legacy).verify(receiver.requests[0].body, receiver.requests[0].headers)

    other_key = app.state.settings.model_copy(update={"secret_key": SecretStr("another key entirely")})
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(Partner).where(Partner.partner_id == "alpha")
                              .values(webhook_secret=encrypt(other_key, new_secret())))
    await offered(app, client, external_id="second", email="second@example.com")
    [second] = [d for d in await deliveries(app) if d.delivery_id != first.delivery_id]
    await worker(app).run_once()
    assert len(receiver.requests) == 1
    [attempt] = await attempts(app, second.delivery_id)
    assert "cannot be decrypted with LEADROUTER_SECRET_KEY" in (attempt.error or "")


async def test_secrets_stored_in_clear_are_encrypted_once_a_key_is_set_and_still_sign(
        app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], receiver: Receiver) -> None:
    """The router worker's start (and every hour) encrypts the secrets an earlier version stored in clear; the
    partner's receiver keeps verifying with the secret it has."""
    await make_partner(client, admin, "alpha", webhook_url=receiver.url)
    await make_partner(client, admin, "beta", territories=[{"country": "DE"}])  # offered nothing here
    legacy = new_secret()
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(Partner).where(Partner.partner_id == "alpha").values(webhook_secret=legacy))
    rotated = (await client.post("/v1/partners/beta/webhook-secret", headers=admin)).json()["secret"]
    async with app.state.sessions() as session:
        before = {p.partner_id: p.webhook_secret for p in (await session.scalars(select(Partner))).all()}
    settings = app.state.settings
    assert await encrypt_stored_secrets(app.state.sessions, settings=settings) == 1
    assert await encrypt_stored_secrets(app.state.sessions, settings=settings) == 0
    async with app.state.sessions() as session:
        after = {p.partner_id: p.webhook_secret for p in (await session.scalars(select(Partner))).all()}
    assert not after["alpha"].startswith("whsec_") and decrypt(settings, after["alpha"]) == legacy
    assert after["beta"] == before["beta"] and decrypt(settings, after["beta"]) == rotated  # already encrypted
    await offered(app, client)
    [delivery] = await deliveries(app)
    assert (await until_settled(app, delivery.delivery_id)).status == "delivered"
    Webhook(legacy).verify(receiver.requests[0].body, receiver.requests[0].headers)


async def test_a_claim_left_by_a_dead_worker_is_sent_by_another_and_delivered_once(
        app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], receiver: Receiver,
        settings: Settings) -> None:
    """The worker that claimed dies before sending (no real SIGKILL here: its claim is committed and
    abandoned). When its lease ends another worker sends it; the dead one's late send changes nothing."""
    await webhook_partner(client, admin, "alpha", receiver.url)
    await offered(app, client)
    [staged] = await deliveries(app)
    dying = DeliveryWorker(app.state.sessions, settings.model_copy(update={"delivery_lease_s": 0.5}))
    [claim] = await dying.claim(10)
    assert await worker(app).run_once() == 0  # leased: not taken by another worker
    await asyncio.sleep(0.6)
    assert await worker(app).run_once() == 1
    [delivery] = await deliveries(app)
    assert delivery.status == "delivered" and len(receiver.requests) == 1

    await dying.deliver(claim)  # it was only slow, not dead: a second send, same webhook-id
    await dying.close()
    [again] = await deliveries(app)
    assert (again.status, again.delivered_at) == ("delivered", delivery.delivered_at)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [staged.delivery_id] * 2
    assert await worker(app).run_once() == 0


async def test_no_webhook_url_no_delivery(app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_partner(client, admin, "alpha")
    await offered(app, client)
    await offered(app, client)  # routed with the partners it read for the first (routing's inputs, reused)
    assert await deliveries(app) == []
    assert (await client.get("/v1/partners/alpha/deliveries", headers=admin)).json() == {
        "items": [], "next_cursor": None}


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = utcnow().replace(microsecond=0)
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s(None, now) is None and retry_after_s("soon", now) is None
    http_date = (now.replace(tzinfo=None)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert retry_after_s(http_date, now) == 0.0


async def test_per_partner_cap_bounds_one_round(app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str],
                                                receiver: Receiver, settings: Settings) -> None:
    await webhook_partner(client, admin, "alpha", receiver.url)
    for _ in range(3):
        await offered(app, client)
    capped = DeliveryWorker(app.state.sessions, settings.model_copy(update={"delivery_per_partner": 2}))
    try:
        assert len(await capped.claim(10)) == 2
    finally:
        await capped.close()
    pending = await deliveries(app, WebhookDelivery.claim_token.is_(None))
    assert len(pending) == 1
