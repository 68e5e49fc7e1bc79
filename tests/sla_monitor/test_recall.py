"""lead_router's side of recall: `sla.breached` with action `recall` (services/lead_router/lead/recall.py)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from services.lead_router.lead.recall import sla_handlers
from shared.config import Settings
from shared.events import MONITOR_SOURCE, CloudEvent, new_event
from shared.models import Lead, LeadOffer, OutboxMessage
from tests.fixtures.builders import make_partner, partner_auth, post_lead, route_waiting, rows


def breached(lead_id: str, partner_id: str, action: str = "recall") -> CloudEvent:
    return new_event("sla.breached", source=MONITOR_SOURCE, subject=lead_id, data={
        "alert_id": "a-1", "lead_id": lead_id, "partner_id": partner_id, "kind": "accept_overdue", "action": action})


async def deliver(app: FastAPI, settings: Settings, event: CloudEvent) -> None:
    async with app.state.sessions() as session, session.begin():
        await sla_handlers(settings)[event.name](session, event)


async def offered_lead(app: FastAPI, client: httpx.AsyncClient, admin: dict[str, str]) -> tuple[str, str, str]:
    for pid in ("alpha", "bravo"):
        await make_partner(client, admin, pid)
    lead_id = (await post_lead(client)).json()["lead_id"]
    await route_waiting(app)
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    first = lead["partner_id"]
    return lead_id, first, "bravo" if first == "alpha" else "alpha"


async def lead_events(app: FastAPI, lead_id: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for msg in await rows(app, OutboxMessage, OutboxMessage.key == lead_id, order_by=OutboxMessage.id):
        event = CloudEvent.parse(msg.payload)
        out.append((event.name, event.data))
    return out


async def test_recall_takes_the_lead_back_and_it_is_routed_on(app: FastAPI, client: httpx.AsyncClient,
                                                              admin: dict[str, str], settings: Settings) -> None:
    lead_id, late, other = await offered_lead(app, client, admin)
    late_key = await partner_auth(client, admin, late)
    await deliver(app, settings, breached(lead_id, late))

    [lead] = await rows(app, Lead, Lead.lead_id == lead_id)
    assert (lead.status, lead.partner_id) == ("received", None)
    [offer] = await rows(app, LeadOffer, LeadOffer.lead_id == lead_id)
    assert (offer.partner_id, offer.status, offer.reason) == (late, "recalled", "accept_overdue")
    assert offer.responded_at is not None
    name, data = (await lead_events(app, lead_id))[-1]
    assert name == "lead.recalled"
    assert {k: data[k] for k in ("lead_id", "status", "partner_id", "reason", "alert_id")} == {
        "lead_id": lead_id, "status": "received", "partner_id": late, "reason": "accept_overdue", "alert_id": "a-1"}
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert timeline[-1]["type"] == "lead.recalled" and timeline[-1]["partner_id"] == late

    await route_waiting(app)
    assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["partner_id"] == other
    late_accept = await client.post(f"/v1/partner/leads/{lead_id}/accept", headers=late_key)
    assert late_accept.status_code == 409


async def test_no_recall_once_the_partner_answered_or_for_alert_only(app: FastAPI, client: httpx.AsyncClient,
                                                                     admin: dict[str, str],
                                                                     settings: Settings) -> None:
    lead_id, first, other = await offered_lead(app, client, admin)
    before = await lead_events(app, lead_id)
    await deliver(app, settings, breached(lead_id, first, action="alert"))
    await deliver(app, settings, breached(lead_id, other))  # not offered to that one
    assert await lead_events(app, lead_id) == before

    key = await partner_auth(client, admin, first)
    assert (await client.post(f"/v1/partner/leads/{lead_id}/accept", headers=key)).status_code == 200
    await deliver(app, settings, breached(lead_id, first))
    [lead] = await rows(app, Lead, Lead.lead_id == lead_id)
    assert (lead.status, lead.partner_id) == ("accepted", first)
    await deliver(app, settings, breached("no-such-lead", first))
