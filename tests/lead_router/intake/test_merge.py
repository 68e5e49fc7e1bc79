"""One lead per person: a delivery whose email matches an open lead (any source) is merged into it."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from shared.models import Lead, LeadEvent, OutboxMessage
from tests.fixtures.builders import lead_body, make_partner, partner_auth, post_lead, route_waiting, rows


async def _timeline(client: httpx.AsyncClient, admin: dict[str, str], lead_id: str) -> list[dict[str, Any]]:
    return list((await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"])


async def test_same_person_from_another_source_updates_the_open_lead(
        client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str]) -> None:
    first = await post_lead(client, external_id="a-1", email="Pat.Lee+x@Example.com", title=None, score=40)
    assert first.status_code == 202
    lead_id = first.json()["lead_id"]
    again = await post_lead(client, "marketo", external_id="m-77", email="  pat.lee+x@example.COM ",
                            title="CTO", score=75, phone=None, company={"employees": 5000})
    assert again.status_code == 200, again.text
    assert again.json() == {"lead_id": lead_id, "status": "received", "duplicate": True}
    [lead] = await rows(app, Lead)
    assert (lead.source, lead.external_id, lead.score) == ("generic", "a-1", 75)
    assert lead.contact["title"] == "CTO" and lead.contact["phone"] == "+1 415 555 0100"  # empty did not win
    assert lead.company["employees"] == 5000 and lead.company["name"] == "Example Health"
    updated = [e for e in await _timeline(client, admin, lead_id) if e["type"] == "lead.updated"]
    assert len(updated) == 1
    assert updated[0]["data"]["changes"]["title"] == {"from": None, "to": "CTO"}
    assert updated[0]["data"]["changes"]["score"] == {"from": 40, "to": 75}
    assert updated[0]["data"]["merged_from"] == {"source": "marketo", "external_id": "m-77"}
    assert "email" not in updated[0]["data"]["changes"]  # the same mailbox, written differently
    types = [m.type for m in await rows(app, OutboxMessage)]
    assert types.count("leadrouter.lead.updated") == 1


async def test_dots_and_plus_tags_are_different_people(client: httpx.AsyncClient, app: FastAPI) -> None:
    ids = {(await post_lead(client, email=email)).json()["lead_id"]
           for email in ("pat.lee@example.com", "patlee@example.com", "pat.lee+1@example.com")}
    assert len(ids) == 3 and len(await rows(app, Lead)) == 3


async def test_unchanged_repeat_records_nothing(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = lead_body(email="same@example.com")
    assert (await client.post("/v1/webhooks/generic", json=body)).status_code == 202
    before = len(await rows(app, LeadEvent))
    again = await client.post("/v1/webhooks/generic", json={**body, "external_id": "other-id"})
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert len(await rows(app, LeadEvent)) == before


async def test_older_delivery_only_fills_gaps(client: httpx.AsyncClient, app: FastAPI) -> None:
    await post_lead(client, email="old@example.com", title=None, score=60, occurred_at="2026-11-20T15:00:00Z")
    await post_lead(client, email="old@example.com", title="VP", score=10, first_name="Patricia",
                    occurred_at="2026-11-01T00:00:00Z")
    [lead] = await rows(app, Lead)
    assert lead.contact["title"] == "VP" and lead.contact["first_name"] == "Dana" and lead.score == 60


async def test_nurturing_lead_that_qualifies_is_routed(client: httpx.AsyncClient, app: FastAPI,
                                                       admin: dict[str, str]) -> None:
    await make_partner(client, admin, "p1")
    rules = {"qualification": {"min_score": 50}, "rules": [{"name": "all", "when": {}, "strategy": "round_robin"}]}
    assert (await client.put("/v1/routing/rules", json=rules, headers=admin)).status_code == 200
    lead_id = (await post_lead(client, email="warm@example.com", score=20)).json()["lead_id"]
    await route_waiting(app)
    assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["status"] == "nurturing"
    merged = await post_lead(client, "hubspot-x", email="WARM@example.com", score=80)
    assert merged.json() == {"lead_id": lead_id, "status": "received", "duplicate": True}
    await route_waiting(app)
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (lead["status"], lead["partner_id"], lead["score"]) == ("offered", "p1", 80)
    types = [e["type"] for e in await _timeline(client, admin, lead_id)]
    assert types == ["lead.received", "lead.nurturing", "lead.updated", "lead.received", "lead.routed"]


async def test_closed_lead_person_coming_back_is_a_new_lead(client: httpx.AsyncClient, app: FastAPI,
                                                           admin: dict[str, str]) -> None:
    await make_partner(client, admin, "p1")
    auth = await partner_auth(client, admin, "p1")
    lead_id = (await post_lead(client, email="back@example.com")).json()["lead_id"]
    await route_waiting(app)
    base = f"/v1/partner/leads/{lead_id}"
    assert (await client.post(f"{base}/accept", headers=auth)).status_code == 200
    assert (await client.post(f"{base}/disposition", json={"status": "lost", "reason": "no_budget"},
                              headers=auth)).status_code == 200
    again = await post_lead(client, email="back@example.com")
    assert again.status_code == 202 and again.json()["lead_id"] != lead_id
    # ... and that new open lead is the one a third delivery merges into
    third = await post_lead(client, email="back@example.com", score=90)
    assert third.json()["lead_id"] == again.json()["lead_id"] and third.json()["duplicate"] is True


async def test_a_known_lead_may_change_email_but_not_onto_another_open_lead(client: httpx.AsyncClient,
                                                                           app: FastAPI) -> None:
    body = lead_body(external_id="x-1", email="old@example.com")
    lead_id = (await client.post("/v1/webhooks/generic", json=body)).json()["lead_id"]
    other_id = (await post_lead(client, email="taken@example.com")).json()["lead_id"]
    moved = await client.post("/v1/webhooks/generic", json={**body, "email": "New@example.com"})
    assert moved.json()["lead_id"] == lead_id
    blocked = await client.post("/v1/webhooks/generic", json={**body, "email": "taken@example.com", "title": "VP"})
    assert blocked.json()["lead_id"] == lead_id
    stored = {lead.lead_id: lead for lead in await rows(app, Lead)}
    assert (stored[lead_id].email_norm, stored[lead_id].contact["title"]) == ("new@example.com", "VP")
    assert stored[other_id].email_norm == "taken@example.com" and len(stored) == 2
