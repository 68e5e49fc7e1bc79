"""Routing with the database: rule sets, simulation, unroutable leads and capacity, through the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.models import Lead, LeadEvent, LeadOffer, OutboxMessage, RoutingState, RuleSet
from tests.fixtures.builders import count_rows, lead_body, make_partner, post_lead, route_waiting, sql_statements

PROBLEM = "application/problem+json"
Headers = dict[str, str]

RULES: dict[str, Any] = {
    "qualification": {"min_score": 50},
    "rules": [
        {"name": "enterprise-storage", "when": {"product": ["storage"], "min_value": 100000},
         "route_to": {"tiers": ["platinum", "gold"]}, "strategy": "weighted"},
        {"name": "everything-else", "when": {}, "strategy": "round_robin"}],
    "tier_weights": {"platinum": 4, "gold": 3, "silver": 2, "registered": 1},
}


async def snapshot(app: FastAPI) -> tuple[int, ...]:
    return tuple([await count_rows(app, model) for model in (Lead, LeadEvent, LeadOffer, OutboxMessage,
                                                             RoutingState, RuleSet)])


async def test_default_rule_set_is_version_0(client: httpx.AsyncClient, admin: Headers) -> None:
    response = await client.get("/v1/routing/rules", headers=admin)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 0 and [r["strategy"] for r in body["rules"]] == ["round_robin"]


async def test_put_rules_versions_and_get_returns_active(client: httpx.AsyncClient, admin: Headers) -> None:
    first = await client.put("/v1/routing/rules", json=RULES, headers=admin)
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1 and first.json()["rules"][0]["name"] == "enterprise-storage"
    assert first.json()["qualification"] == {"min_score": 50}
    second = await client.put("/v1/routing/rules", json={"rules": [{"name": "only", "strategy": "least_loaded"}],
                                                          "tier_weights": {"gold": 10}}, headers=admin)
    assert second.status_code == 200 and second.json()["version"] == 2
    active = (await client.get("/v1/routing/rules", headers=admin)).json()
    assert active == second.json()
    assert active["tier_weights"] == {"platinum": 4, "gold": 10, "silver": 2, "registered": 1}


async def test_concurrent_puts_get_distinct_versions(client: httpx.AsyncClient, admin: Headers) -> None:
    responses = await asyncio.gather(*(client.put("/v1/routing/rules", json=RULES, headers=admin) for _ in range(4)))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == [1, 2, 3, 4]


@pytest.mark.parametrize("body", [
    {"rules": []},
    {},
    {"rules": [{"name": "x", "strategy": "random"}]},
    {"rules": [{"name": "x"}, {"name": "x"}]},
    {"rules": [{"name": "x", "when": {"colour": ["red"]}}]},
    {"rules": [{"name": "x", "when": {"min_value": 10, "max_value": 5}}]},
    {"rules": [{"name": "x", "when": {"country": []}}]},
    {"rules": [{"name": "x", "route_to": {"tiers": ["diamond"]}}]},
    {"rules": [{"name": "x"}], "tier_weights": {"gold": 0}},
    {"rules": [{"name": "x"}], "qualification": {"min_score": -1}},
    {"rules": [{"name": ""}]},
    {"rules": "all"},
    {"rules": [{"name": "nul\x00"}]},
    {"rules": [{"name": "x" * 201}]},
])
async def test_invalid_rule_set_is_422_and_keeps_the_version(client: httpx.AsyncClient, admin: Headers,
                                                             app: FastAPI, body: dict[str, Any]) -> None:
    assert (await client.put("/v1/routing/rules", json=RULES, headers=admin)).json()["version"] == 1
    response = await client.put("/v1/routing/rules", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM) and response.json()["errors"]
    active = (await client.get("/v1/routing/rules", headers=admin)).json()
    assert active["version"] == 1 and active["rules"][0]["name"] == "enterprise-storage"
    assert await count_rows(app, RuleSet) == 1


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/routing/rules"), ("PUT", "/v1/routing/rules"),
                                              ("POST", "/v1/routing/simulate")])
async def test_admin_token_required(client: httpx.AsyncClient, app: FastAPI, method: str, path: str) -> None:
    response = await client.request(method, path, json=RULES, headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401 and response.headers["content-type"].startswith(PROBLEM)
    assert await count_rows(app, RuleSet) == 0


async def test_simulate_decides_and_writes_nothing(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await make_partner(client, admin, "plat", tier="platinum")
    await make_partner(client, admin, "gold", tier="gold")
    await make_partner(client, admin, "silver", tier="silver")
    await client.put("/v1/routing/rules", json=RULES, headers=admin)
    await post_lead(client)
    await route_waiting(app)  # some real strategy state to start from
    before = await snapshot(app)

    leads = [lead_body(external_id="big"), lead_body(external_id="small", estimated_value=10),
             lead_body(external_id="cold", score=10), lead_body(external_id="far", company={"country": "JP"})]
    response = await client.post("/v1/routing/simulate", json={"leads": leads}, headers=admin)
    assert response.status_code == 200, response.text
    items = {i["external_id"]: i for i in response.json()["items"]}
    assert (items["big"]["outcome"], items["big"]["rule"], items["big"]["strategy"]) == (
        "routed", "enterprise-storage", "weighted")
    assert items["big"]["partner_id"] in ("plat", "gold") and items["big"]["rule_set_version"] == 1
    assert {c["partner_id"]: c["eligible"] for c in items["big"]["candidates"]} == {
        "gold": True, "plat": True, "silver": False}
    assert items["small"]["outcome"] == "routed" and items["small"]["rule"] == "everything-else"
    assert items["cold"]["outcome"] == "nurturing" and "below" in items["cold"]["reason"]
    assert items["far"]["outcome"] == "unroutable"
    assert await snapshot(app) == before

    bad = await client.post("/v1/routing/simulate", json={"leads": [{"email": "x@example.com"}]}, headers=admin)
    assert bad.status_code == 422 and {"leads.0.external_id", "leads.0.company"} <= {
        e["field"] for e in bad.json()["errors"]}
    assert (await client.post("/v1/routing/simulate", json={"leads": []}, headers=admin)).status_code == 422
    assert await snapshot(app) == before


async def test_unroutable_lead_has_the_reason_in_its_timeline(client: httpx.AsyncClient, admin: Headers,
                                                              app: FastAPI) -> None:
    await make_partner(client, admin, "us-only", territories=[{"country": "US"}])
    lead_id = (await post_lead(client, company={"country": "FR", "region": None, "postal_code": "75001"})).json()[
        "lead_id"]
    await route_waiting(app)
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (lead["status"], lead["partner_id"]) == ("unroutable", None)
    last = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"][-1]
    assert last["type"] == "lead.unroutable" and "no eligible partner" in last["data"]["reason"]
    [candidate] = last["data"]["candidates"]
    assert candidate["partner_id"] == "us-only" and not candidate["eligible"]
    assert any("territory" in r and "FR" in r for r in candidate["reasons"])
    assert await count_rows(app, OutboxMessage, OutboxMessage.type == "leadrouter.lead.unroutable") == 1
    assert await route_waiting(app) == 0  # unroutable leads are not retried on every pass


async def test_capacity_is_respected(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    """Weighted picks platinum (4) over registered (1) twice running, unless platinum is full."""
    await make_partner(client, admin, "big", tier="platinum", capacity={"max_open_leads": 1})
    await make_partner(client, admin, "small", tier="registered")
    await client.put("/v1/routing/rules", json={"rules": [{"name": "w", "strategy": "weighted"}]}, headers=admin)
    first = (await post_lead(client)).json()["lead_id"]
    await route_waiting(app)
    second = (await post_lead(client)).json()["lead_id"]
    await route_waiting(app)
    partner_of = {i["lead_id"]: i["partner_id"] for i in (await client.get("/v1/leads", headers=admin)).json()["items"]}
    assert (partner_of[first], partner_of[second]) == ("big", "small")
    routed = (await client.get(f"/v1/leads/{second}/timeline", headers=admin)).json()["items"][-1]["data"]
    big = next(c for c in routed["candidates"] if c["partner_id"] == "big")
    assert not big["eligible"] and any("capacity" in r for r in big["reasons"])
    assert (await client.get("/v1/partners/big", headers=admin)).json()["open_leads"] == 1

    await make_partner(client, admin, "small", tier="registered", capacity={"max_open_leads": 1})
    third = (await post_lead(client)).json()["lead_id"]
    await route_waiting(app)
    assert (await client.get(f"/v1/leads/{third}", headers=admin)).json()["status"] == "unroutable"


async def test_reconciler_routes_every_waiting_lead_not_just_one_page(
        client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI) -> None:
    """After a broker restart every waiting lead is routed in one pass, however many there are."""
    await make_partner(client, admin, "alpha", capacity={"max_open_leads": None})
    await make_partner(client, admin, "bravo", capacity={"max_open_leads": None})
    await asyncio.gather(*(post_lead(client) for _ in range(230)))
    assert await route_waiting(app) == 230
    offered = (await client.get("/v1/leads", params={"status": "offered", "limit": 500}, headers=admin)).json()
    assert len(offered["items"]) == 230
    assert {lead["partner_id"] for lead in offered["items"]} == {"alpha", "bravo"}
    assert (await client.get("/v1/leads", params={"status": "received"}, headers=admin)).json()["items"] == []


async def test_a_nurturing_lead_is_decided_once_per_fact(client: httpx.AsyncClient, admin: Headers,
                                                         app: FastAPI) -> None:
    """After a restart both the reconciler and the backlogged `lead.received` may ask to route a lead. One
    decision each fact: asking again about a nurturing lead (even under a rule change) decides nothing, a
    higher score posted again does."""
    from services.lead_router.routing.service import route_lead

    await make_partner(client, admin, "acme")
    assert (await client.put("/v1/routing/rules", json=RULES, headers=admin)).status_code == 200
    lead_id = (await post_lead(client, external_id="cold-1", score=20)).json()["lead_id"]
    assert await route_waiting(app) == 1
    lenient = {**RULES, "qualification": {"min_score": 10}}
    assert (await client.put("/v1/routing/rules", json=lenient, headers=admin)).status_code == 200
    async with app.state.sessions() as session, session.begin():  # the backlogged lead.received
        assert await route_lead(session, lead_id, settings=app.state.settings) is None
    assert await route_waiting(app) == 0
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert [item["type"] for item in timeline] == ["lead.received", "lead.nurturing"]

    assert (await post_lead(client, external_id="cold-1", score=60)).status_code == 200  # a new fact
    assert await route_waiting(app) == 1
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert [item["type"] for item in timeline][-2:] == ["lead.received", "lead.routed"]


async def test_a_lead_is_decided_once_per_transaction_and_never_in_a_savepoint(
        client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    """A decision's writes reach the database at commit: routing the same lead again in that transaction
    decides nothing (it would offer it twice), and routing inside a savepoint is refused."""
    from services.lead_router.routing.service import route_leads

    await make_partner(client, admin, "acme")
    lead_id = (await post_lead(client)).json()["lead_id"]
    settings = app.state.settings
    async with app.state.sessions() as session, session.begin():
        first = await route_leads(session, [lead_id], settings=settings)
        again = await route_leads(session, [lead_id], settings=settings, look_first=False)
    assert [d.partner_id for d in first] == ["acme"] and again == []
    assert await count_rows(app, LeadOffer, LeadOffer.lead_id == lead_id) == 1
    other = (await post_lead(client, external_id="savepoint-1", email="savepoint@example.com")).json()["lead_id"]
    async with app.state.sessions() as session, session.begin():
        with pytest.raises(RuntimeError, match="savepoints"):
            async with session.begin_nested():
                await route_leads(session, [other], settings=settings)
    assert await route_waiting(app) == 1  # still waiting, routed now


async def test_a_lone_lead_reads_states_and_loads_with_itself(client: httpx.AsyncClient, admin: Headers,
                                                               app: FastAPI, db_url: str) -> None:
    """A batch of one lead (routing on intake at moderate rates) reads the strategy states and the partners'
    loads in the statement that locks it, on PostgreSQL (one round trip fewer); a bigger batch reads them
    apart (in every row they would cost a copy a lead). Rotation and capacity carry across both."""
    await client.put("/v1/routing/rules", headers=admin, json={**RULES, "rules": [
        {"name": "everything-else", "when": {}, "strategy": "round_robin"}]})
    for name in ("acme", "bluepeak"):
        await make_partner(client, admin, name, capacity={"max_open_leads": 3})
    routed = []
    for _ in range(3):  # one lead a batch: the rotation read with each lead
        routed.append((await post_lead(client)).json()["lead_id"])
        with sql_statements(app) as seen:
            await route_waiting(app)
        merged = [s for s in seen if "FROM leads" in s and "partner_open_leads" in s]
        assert len(merged) == (1 if db_url.startswith("postgresql") else 0)
    batch = [(await post_lead(client)).json()["lead_id"] for _ in range(4)]
    with sql_statements(app) as seen:
        await route_waiting(app)
    assert not [s for s in seen if "FROM leads" in s and "partner_open_leads" in s]
    partners = [(await client.get(f"/v1/leads/{i}", headers=admin)).json()["partner_id"] for i in routed + batch]
    assert partners[:6] in (["acme", "bluepeak"] * 3, ["bluepeak", "acme"] * 3)  # the rotation carried on
    assert partners[6] is None  # three open leads each: capacity reached
