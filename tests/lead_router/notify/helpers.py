"""Builders for notification tests: a partner with a webhook and a secret, an offered lead, the worker."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import FastAPI

from services.lead_router.notify.worker import DeliveryWorker
from shared.models import WebhookAttempt, WebhookDelivery
from tests.fixtures.builders import make_partner, post_lead, route_waiting, rows


async def webhook_partner(client: httpx.AsyncClient, admin: dict[str, str], partner_id: str, url: str,
                          **overrides: Any) -> str:
    """The partner with `webhook_url` and a signing secret; returns the secret."""
    await make_partner(client, admin, partner_id, webhook_url=url, **overrides)
    response = await client.post(f"/v1/partners/{partner_id}/webhook-secret", headers=admin)
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


async def offered(app: FastAPI, client: httpx.AsyncClient, **overrides: Any) -> str:
    response = await post_lead(client, **overrides)
    assert response.status_code in (200, 201, 202), response.text
    await route_waiting(app)
    return str(response.json()["lead_id"])


def worker(app: FastAPI) -> DeliveryWorker:
    w: DeliveryWorker = app.state.delivery_worker
    return w


async def deliveries(app: FastAPI, *where: Any) -> list[WebhookDelivery]:
    return await rows(app, WebhookDelivery, *where, order_by=WebhookDelivery.created_at)


async def attempts(app: FastAPI, delivery_id: str) -> list[WebhookAttempt]:
    return await rows(app, WebhookAttempt, WebhookAttempt.delivery_id == delivery_id,
                      order_by=WebhookAttempt.attempt_id)


async def until_settled(app: FastAPI, delivery_id: str, *, timeout_s: float = 10.0) -> WebhookDelivery:
    """Run worker rounds until the delivery is no longer pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        await worker(app).run_once()
        [row] = await deliveries(app, WebhookDelivery.delivery_id == delivery_id)
        if row.status != "pending":
            return row
        assert time.monotonic() < deadline, f"still pending: {row.last_error}"
        await asyncio.sleep(0.05)
