"""Native payloads through `POST /v1/webhooks/{source}` for each adapter, verified each vendor's way, on
PostgreSQL and SQLite: what is stored, what is answered, and that a payload with several leads is stored
all together or not at all."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from fastapi import FastAPI

from services.lead_router.source.signatures import sign_hubspot_v3, sign_mautic
from shared.models import Lead, LeadEvent, OutboxMessage
from tests.fixtures.builders import assert_problem, count_rows, make_partner, route_waiting, rows

HS_SECRET = "hubspot-app-secret-1234"
MAUTIC_SECRET = "mautic-webhook-secret-99"
JSON = {"content-type": "application/json"}


async def _source(client: httpx.AsyncClient, admin: dict[str, str], name: str, body: dict[str, Any]) -> None:
    response = await client.put(f"/v1/sources/{name}", json=body, headers=admin)
    assert response.status_code == 201, response.text


def _hubspot(url: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time() * 1000))
    return {**JSON, "X-HubSpot-Request-Timestamp": ts,
            "X-HubSpot-Signature-v3": sign_hubspot_v3(HS_SECRET, "POST", url, body, ts)}


def _contact(vid: int, email: str, score: str) -> dict[str, Any]:
    """A HubSpot workflow "Send a webhook" body: the contact record, every value a string."""
    props = {"email": email, "firstname": "Ana", "lastname": "Silva", "jobtitle": "CIO", "company": "Acme Ltd",
             "phone": "+44 20 7946 0000", "industry": "healthcare", "numemployees": "1000",
             "country": "United Kingdom", "zip": "EC1A 1BB", "hubspotscore": score}
    return {"vid": vid, "canonical-vid": vid, "portal-id": 62515, "is-contact": True,
            "properties": {k: {"value": v, "versions": [{"value": v, "source-type": "FORM"}]}
                           for k, v in props.items()}}


async def test_hubspot_contact_then_score_change_routes_the_nurturing_lead(
        client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str]) -> None:
    url = "https://leads.example.com/v1/webhooks/hubspot-emea"  # what HubSpot signed: a proxy sits in front
    await _source(client, admin, "hubspot-emea", {"adapter": "hubspot", "default_campaign": "emea-inbound",
                                                  "auth": {"type": "hubspot_v3", "secret": HS_SECRET,
                                                           "signature_url": url}})
    await make_partner(client, admin, "uk1", territories=[{"country": "GB"}])
    rules = {"qualification": {"min_score": 50}, "rules": [{"name": "all", "when": {}}]}
    assert (await client.put("/v1/routing/rules", json=rules, headers=admin)).status_code == 200

    body = orjson.dumps(_contact(3234574, "ana@acme.example", "20"))
    created = await client.post("/v1/webhooks/hubspot-emea", content=body, headers=_hubspot(url, body))
    assert created.status_code == 202, created.text
    lead_id = created.json()["lead_id"]
    [lead] = await rows(app, Lead)
    assert (lead.external_id, lead.score, lead.campaign) == ("3234574", 20, "emea-inbound")
    assert lead.company == {"name": "Acme Ltd", "domain": None, "industry": "healthcare", "employees": 1000,
                            "country": "GB", "region": None, "postal_code": "EC1A 1BB"}
    assert lead.contact["title"] == "CIO" and lead.contact["first_name"] == "Ana"
    await route_waiting(app)
    assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["status"] == "nurturing"

    events = [{"eventId": 1, "subscriptionId": 7, "portalId": 62515, "appId": 9, "occurredAt": 1764000000000,
               "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": 999,
               "changeSource": "CRM", "changeFlag": "NEW"},
              {"eventId": 2, "subscriptionId": 8, "portalId": 62515, "appId": 9, "occurredAt": 1764000001000,
               "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 3234574,
               "propertyName": "hubspotscore", "propertyValue": "85", "changeSource": "CALCULATED"}]
    body = orjson.dumps(events)
    changed = await client.post("/v1/webhooks/hubspot-emea", content=body, headers=_hubspot(url, body))
    assert changed.status_code == 202, changed.text
    assert changed.json() == {"leads": [
        {"external_id": "999", "lead_id": None, "status": "ignored", "duplicate": False},
        {"external_id": "3234574", "lead_id": lead_id, "status": "received", "duplicate": True}]}
    await route_waiting(app)
    shown = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (shown["status"], shown["partner_id"], shown["score"]) == ("offered", "uk1", 85)

    # signed for another URL (the proxy's public one was configured): refused, nothing stored
    body = orjson.dumps(_contact(1, "x@acme.example", "90"))
    assert_problem(await client.post("/v1/webhooks/hubspot-emea", content=body,
                                     headers=_hubspot("http://lead-router/v1/webhooks/hubspot-emea", body)), 401)
    assert await count_rows(app, Lead) == 1


def _mautic_contact(contact_id: int, email: str, country: str, points: int) -> dict[str, Any]:
    core = {"email": email, "firstname": "Jo", "lastname": "Park", "company": "Initech", "country": country,
            "state": "", "zipcode": "10115", "position": "Head of IT", "phone": None}
    return {"id": contact_id, "points": points, "color": "#ab0000", "dateAdded": "2026-11-20T15:04:05+00:00",
            "fields": {"core": {alias: {"id": str(i), "alias": alias, "value": value, "type": "text"}
                                for i, (alias, value) in enumerate(core.items())}}}


async def test_mautic_batch_is_stored_whole_or_not_at_all(client: httpx.AsyncClient, app: FastAPI,
                                                          admin: dict[str, str]) -> None:
    await _source(client, admin, "mautic", {"adapter": "mautic", "auth": {"type": "mautic", "secret": MAUTIC_SECRET}})

    def post(payload: dict[str, Any]) -> Any:
        body = orjson.dumps(payload)
        return client.post("/v1/webhooks/mautic", content=body,
                           headers={**JSON, "Webhook-Signature": sign_mautic(MAUTIC_SECRET, body)})

    at = "2026-11-24T10:00:00+00:00"
    bad = {"mautic.lead_post_save_new": [
        {"contact": _mautic_contact(11, "jo@initech.example", "Germany", 30), "timestamp": at},
        {"contact": _mautic_contact(12, "kim@initech.example", "Atlantis", 40), "timestamp": at},
    ], "timestamp": at}
    problem = assert_problem(await post(bad), 422)
    assert [e["field"] for e in problem["errors"]] == ["mautic.lead_post_save_new[1].company.country"]
    assert (await count_rows(app, Lead), await count_rows(app, OutboxMessage), await count_rows(app, LeadEvent)) \
        == (0, 0, 0)

    good = {"mautic.lead_post_save_new": [
        {"contact": _mautic_contact(11, "jo@initech.example", "Germany", 30), "timestamp": "2026-11-24T10:00:00+00:00"},
        {"contact": _mautic_contact(12, "kim@initech.example", "deutschland", 40),
         "timestamp": "2026-11-24T10:00:01+00:00"},
    ], "mautic.lead_points_change": [
        {"contact": _mautic_contact(11, "jo@initech.example", "DE", 75), "points": {"old_points": 30, "new_points": 75},
         "timestamp": "2026-11-24T10:00:03+00:00"}],
        "timestamp": "2026-11-24T10:00:04+00:00"}
    response = await post(good)
    assert response.status_code == 202, response.text
    leads = response.json()["leads"]
    assert [(i["external_id"], i["duplicate"]) for i in leads] == [("11", False), ("12", False), ("11", True)]
    assert leads[0]["lead_id"] == leads[2]["lead_id"]
    stored = {lead.external_id: lead for lead in await rows(app, Lead)}
    assert stored["11"].score == 75 and stored["12"].score == 40
    assert stored["12"].company["country"] == "DE" and stored["11"].contact["title"] == "Head of IT"
    # the same batch again (Mautic retries): nothing new
    before = await count_rows(app, LeadEvent)
    assert (await post(good)).status_code == 202
    assert await count_rows(app, Lead) == 2 and await count_rows(app, LeadEvent) == before


async def test_marketo_template_with_header_token(client: httpx.AsyncClient, app: FastAPI,
                                                  admin: dict[str, str]) -> None:
    await _source(client, admin, "marketo", {
        "adapter": "marketo", "auth": {"type": "header_token", "header": "X-Marketo-Token", "secret": "tok-123456789"},
        "field_map": {"product": "Product Interest", "company.region": "lead.State Code"}})
    template = {"id": "88412", "Email Address": "dana.wu@example.com", "First Name": "Dana", "Last Name": "",
                "Company Name": "Example Health", "Country": "usa", "lead": {"State Code": "ca"},
                "Product Interest": "storage", "leadScore": "82", "Phone": "",
                "createdAt": "2026-11-20 15:04:05"}
    headers = {**JSON, "X-Marketo-Token": "tok-123456789"}
    response = await client.post("/v1/webhooks/marketo", json=template, headers=headers)
    assert response.status_code == 202, response.text
    [lead] = await rows(app, Lead)
    assert (lead.external_id, lead.product, lead.score) == ("88412", "storage", 82)
    assert (lead.company["country"], lead.company["region"]) == ("US", "CA")
    assert lead.contact["last_name"] is None and lead.contact["phone"] is None  # empty strings mean null
    assert lead.occurred_at is not None and lead.occurred_at.isoformat().startswith("2026-11-20T15:04:05")
    assert_problem(await client.post("/v1/webhooks/marketo", json=template,
                                     headers={**JSON, "X-Marketo-Token": "wrong"}), 401)
    assert_problem(await client.post("/v1/webhooks/marketo", json=template, headers=JSON), 401)


async def test_form_post_with_dotted_keys(client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str]) -> None:
    await _source(client, admin, "landing", {"adapter": "form", "auth": {"type": "none"},
                                             "default_campaign": "spring-landing"})
    form = {"email": "lee@example.org", "first_name": "Lee", "company.name": "Globex", "company.country": "Germany",
            "company.employees": "250", "score": "64", "product": "backup"}
    body = urlencode(form)
    response = await client.post("/v1/webhooks/landing", content=body,
                                 headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8",
                                          "webhook-id": "form-1"})
    assert response.status_code == 202, response.text
    [lead] = await rows(app, Lead)
    assert (lead.company["name"], lead.company["country"], lead.company["employees"]) == ("Globex", "DE", 250)
    assert (lead.score, lead.campaign, lead.external_id) == (64, "spring-landing", "form-1")
    # the browser posts it twice: the same person, one lead
    again = await client.post("/v1/webhooks/landing", content=body,
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert again.status_code == 200 and again.json()["lead_id"] == response.json()["lead_id"]
    assert_problem(await client.post("/v1/webhooks/landing", json=form), 415)
