"""The admin's side: the signing secret, the delivery log (newest first, by cursor) and retry."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from services.lead_router.app import create_app
from shared.config import Settings
from shared.crypto import decrypt
from shared.models import Partner, WebhookDelivery
from tests.fixtures.apps import asgi_client, serving
from tests.fixtures.builders import assert_problem, make_partner, rows
from tests.lead_router.notify.conftest import Receiver
from tests.lead_router.notify.helpers import deliveries, offered, until_settled, webhook_partner


async def test_secret_is_shown_once_and_replaced(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_partner(client, admin, "alpha", webhook_url="https://hooks.example.com/leads")
    first = await client.post("/v1/partners/alpha/webhook-secret", headers=admin)
    second = await client.post("/v1/partners/alpha/webhook-secret", headers=admin)
    assert first.status_code == second.status_code == 201
    assert list(first.json()) == ["secret"] and first.json()["secret"].startswith("whsec_")
    assert first.json()["secret"] != second.json()["secret"]
    shown = (await client.get("/v1/partners/alpha", headers=admin)).text
    assert "whsec_" not in shown and "webhook_secret" not in shown
    assert (await client.get("/v1/partners/alpha", headers=admin)).json()["webhook_enabled"] is True
    assert_problem(await client.post("/v1/partners/nobody/webhook-secret", headers=admin), 404)
    assert_problem(await client.post("/v1/partners/alpha/webhook-secret"), 401)


async def test_the_secret_is_stored_encrypted_and_needs_the_secret_key(
        app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str], settings: Settings) -> None:
    """At rest the signing secret is encrypted with LEADROUTER_SECRET_KEY, as the sources' are; without that
    key no secret is made (409) and the partner's stays as it was."""
    await make_partner(client, admin, "alpha", webhook_url="https://hooks.example.com/leads")
    shown = (await client.post("/v1/partners/alpha/webhook-secret", headers=admin)).json()["secret"]
    [stored] = [p.webhook_secret for p in await rows(app, Partner, Partner.partner_id == "alpha")]
    assert stored and shown not in stored and not stored.startswith("whsec_")
    assert decrypt(settings, stored) == shown
    async with serving(create_app(settings.model_copy(update={"secret_key": None}))) as keyless, \
            asgi_client(keyless, "http://lr") as other:
        problem = assert_problem(await other.post("/v1/partners/alpha/webhook-secret", headers=admin), 409)
        assert "LEADROUTER_SECRET_KEY" in problem["detail"]
        assert [p.webhook_secret for p in await rows(keyless, Partner, Partner.partner_id == "alpha")] == [stored]


async def test_deliveries_newest_first_by_cursor(app: FastAPI, client: httpx.AsyncClient,
                                                 admin: dict[str, str]) -> None:
    await webhook_partner(client, admin, "alpha", "https://hooks.example.com/leads")
    leads = [await offered(app, client) for _ in range(3)]
    first = (await client.get("/v1/partners/alpha/deliveries?limit=2", headers=admin)).json()
    assert [d["lead_id"] for d in first["items"]] == leads[::-1][:2]
    assert all(d["status"] == "pending" and d["attempts"] == 0 and d["next_attempt_at"] for d in first["items"])
    metrics = (await client.get("/metrics")).text
    assert "leadrouter_webhook_pending 3.0" in metrics
    [age] = [float(line.split()[1]) for line in metrics.splitlines()
             if line.startswith("leadrouter_webhook_oldest_pending_seconds ")]
    assert 0 < age < 60
    rest = (await client.get(f"/v1/partners/alpha/deliveries?limit=2&cursor={first['next_cursor']}",
                             headers=admin)).json()
    assert [d["lead_id"] for d in rest["items"]] == leads[:1] and rest["next_cursor"] is None
    assert_problem(await client.get("/v1/partners/alpha/deliveries?cursor=nope", headers=admin), 422)
    assert_problem(await client.get("/v1/partners/nobody/deliveries", headers=admin), 404)
    assert_problem(await client.get("/v1/partners/alpha/deliveries"), 401)


async def test_retry_failed_only(app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str],
                                 receiver: Receiver) -> None:
    await webhook_partner(client, admin, "alpha", receiver.url)
    await offered(app, client)
    await offered(app, client)
    failed, done = await deliveries(app)
    assert (await until_settled(app, done.delivery_id)).status == "delivered"
    async with app.state.sessions() as session, session.begin():
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.delivery_id == failed.delivery_id)
                              .values(status="failed", next_attempt_at=None, last_error="HTTP 503"))
    url = f"/v1/partners/alpha/deliveries/{failed.delivery_id}/retry"
    retried = await client.post(url, headers=admin)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending" and retried.json()["next_attempt_at"]
    assert_problem(await client.post(url, headers=admin), 409)  # pending already
    assert_problem(await client.post(f"/v1/partners/alpha/deliveries/{done.delivery_id}/retry", headers=admin), 409)
    assert_problem(await client.post("/v1/partners/alpha/deliveries/unknown/retry", headers=admin), 404)
    assert_problem(await client.post(f"/v1/partners/nobody/deliveries/{failed.delivery_id}/retry",
                                     headers=admin), 404)
    assert_problem(await client.post(url), 401)
    assert (await until_settled(app, failed.delivery_id)).status == "delivered"
