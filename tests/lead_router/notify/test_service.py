"""Staging: a notification is written in the transaction of the offer or the recall, for partners with a
webhook, and carries no contact detail."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.config import Settings
from tests.lead_router.notify.helpers import deliveries, offered, webhook_partner
from tests.sla_monitor.test_recall import breached, deliver


async def test_recall_stages_a_recalled_notification(app: FastAPI, client: httpx.AsyncClient,
                                                     admin: dict[str, str], settings: Settings) -> None:
    await webhook_partner(client, admin, "alpha", "https://hooks.example.com/leads")
    lead_id = await offered(app, client)
    await deliver(app, settings, breached(lead_id, "alpha"))
    offer, recall = await deliveries(app)
    assert (offer.type, recall.type) == ("leadrouter.lead.offered", "leadrouter.lead.recalled")
    assert (recall.partner_id, recall.lead_id, recall.status) == ("alpha", lead_id, "pending")
    assert recall.payload["id"] == recall.delivery_id and recall.payload["subject"] == lead_id
    data = recall.payload["data"]
    assert data["lead_id"] == lead_id and data["recalled_at"]
    assert not {"email", "first_name", "last_name", "phone", "title", "contact"} & set(data)
    assert not {"email", "first_name", "last_name", "phone", "title"} & set(data["company"])
    listed = (await client.get("/v1/partners/alpha/deliveries", headers=admin)).json()["items"]
    assert [d["type"] for d in listed] == ["leadrouter.lead.recalled", "leadrouter.lead.offered"]


async def test_nothing_staged_for_a_breach_that_recalls_nothing(app: FastAPI, client: httpx.AsyncClient,
                                                                admin: dict[str, str], settings: Settings) -> None:
    await webhook_partner(client, admin, "alpha", "https://hooks.example.com/leads")
    lead_id = await offered(app, client)
    await deliver(app, settings, breached(lead_id, "alpha", action="alert"))
    assert [d.type for d in await deliveries(app)] == ["leadrouter.lead.offered"]
