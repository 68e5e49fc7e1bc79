"""`/v1/leads` (admin): lists, filters, cursors and the timeline, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from tests.fixtures.builders import assert_problem, make_partner, partner_auth, post_lead, route_waiting

Headers = dict[str, str]




def cursor_of(values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


async def all_pages(client: httpx.AsyncClient, admin: Headers, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        page = await client.get("/v1/leads", params={**params, **({"cursor": cursor} if cursor else {})},
                                headers=admin)
        assert page.status_code == 200, page.text
        seen += [item["lead_id"] for item in page.json()["items"]]
        if not (cursor := page.json()["next_cursor"]):
            return seen
    raise AssertionError("the cursor never ended")


async def test_list_filters_and_pages(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await make_partner(client, admin, "a", territories=[{"country": "US"}])
    await make_partner(client, admin, "b", territories=[{"country": "DE"}])
    us = [(await post_lead(client)).json()["lead_id"] for _ in range(3)]
    de = [(await post_lead(client, source="hubspot", company={"country": "DE", "region": None})).json()["lead_id"]
          for _ in range(2)]
    fr = (await post_lead(client, source="hubspot", company={"country": "FR"})).json()["lead_id"]
    waiting = (await post_lead(client)).json()["lead_id"]
    assert await route_waiting(app) == 7
    late = (await post_lead(client)).json()["lead_id"]  # not routed: still received

    everything = await all_pages(client, admin, limit=2)
    assert len(everything) == len(set(everything)) == 8
    assert everything[0] == late  # newest first
    full = (await client.get("/v1/leads", headers=admin)).json()
    assert [i["lead_id"] for i in full["items"]] == everything and full["next_cursor"] is None
    created = [datetime.fromisoformat(i["created_at"]) for i in full["items"]]
    assert created == sorted(created, reverse=True)

    assert set(await all_pages(client, admin, partner_id="a", limit=1)) == {*us, waiting}
    assert set(await all_pages(client, admin, partner_id="b")) == set(de)
    assert set(await all_pages(client, admin, source="hubspot", limit=2)) == {*de, fr}
    assert set(await all_pages(client, admin, status="unroutable")) == {fr}
    assert set(await all_pages(client, admin, status="received")) == {late}
    assert set(await all_pages(client, admin, status="offered", source="hubspot")) == set(de)
    assert await all_pages(client, admin, status="won") == []
    assert await all_pages(client, admin, partner_id="nobody") == []

    lead = (await client.get(f"/v1/leads/{de[0]}", headers=admin)).json()
    assert lead["lead_id"] == de[0] and lead["source"] == "hubspot" and lead["partner_id"] == "b"
    assert lead["contact"]["email"].startswith("dana.wu+") and lead["company"]["country"] == "DE"
    for key in ("external_id", "status", "score", "product", "estimated_value", "created_at", "routed_at",
                "accepted_at", "closed_at"):
        assert key in lead


@pytest.mark.parametrize("params", [
    {"status": "open"}, {"status": "OFFERED"}, {"limit": 0}, {"limit": 501}, {"limit": "ten"},
    {"cursor": "!!!"}, {"cursor": "bm90IGpzb24"}, {"cursor": cursor_of(["2026-01-01T00:00:00+00:00"])},
    {"cursor": cursor_of([1, 2])}, {"cursor": cursor_of(["yesterday", "x"])},
    {"cursor": cursor_of(["2026-01-01T00:00:00", "x"])}, {"cursor": cursor_of(["2026-01-01T00:00:00+00:00", 5])},
    {"cursor": cursor_of(["2026-01-01T00:00:00+00:00", "\x00"])}, {"cursor": cursor_of({"a": 1})},
    {"partner_id": ""}, {"source": "x" * 65}, {"partner_id": "\x00"}, {"source": "a\x00"},
])
async def test_bad_list_query_is_422(client: httpx.AsyncClient, admin: Headers, params: dict[str, Any]) -> None:
    await post_lead(client)
    problem = assert_problem(await client.get("/v1/leads", params=params, headers=admin), 422)
    assert problem["errors"]


async def test_unknown_lead_is_404(client: httpx.AsyncClient, admin: Headers) -> None:
    for lead_id in (str(uuid.uuid4()), "nope", "%00", "x" * 300):
        assert_problem(await client.get(f"/v1/leads/{lead_id}", headers=admin), 404)
        assert_problem(await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin), 404)


@pytest.mark.parametrize("path", ["/v1/leads", "/v1/leads/{lead_id}", "/v1/leads/{lead_id}/timeline"])
async def test_admin_token_required(client: httpx.AsyncClient, admin: Headers, app: FastAPI, path: str) -> None:
    await make_partner(client, admin, "a")
    partner = await partner_auth(client, admin, "a")
    lead_id = (await post_lead(client)).json()["lead_id"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, partner):
        assert_problem(await client.get(path.format(lead_id=lead_id), headers=headers), 401)


async def test_timeline_oldest_first_with_routing_explanation(client: httpx.AsyncClient, admin: Headers,
                                                              app: FastAPI) -> None:
    await make_partner(client, admin, "a", tier="gold")
    await make_partner(client, admin, "b", tier="silver", territories=[{"country": "US", "regions": ["NY"]}])
    rules = {"rules": [{"name": "gold-first", "when": {"product": ["storage"]}, "route_to": {"tiers": ["gold"]},
                        "strategy": "weighted"}, {"name": "rest", "when": {}}]}
    version = (await client.put("/v1/routing/rules", json=rules, headers=admin)).json()["version"]
    lead_id = (await post_lead(client)).json()["lead_id"]
    await route_waiting(app)
    auth = await partner_auth(client, admin, "a")
    assert (await client.post(f"/v1/partner/leads/{lead_id}/accept", headers=auth)).status_code == 200

    items = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert [i["type"] for i in items] == ["lead.received", "lead.routed", "lead.accepted"]
    times = [datetime.fromisoformat(i["at"]) for i in items]
    assert times == sorted(times) and all(t.tzinfo is not None for t in times)
    routed = items[1]
    assert routed["partner_id"] == "a"
    data = routed["data"]
    assert (data["rule"], data["strategy"], data["rule_set_version"]) == ("gold-first", "weighted", version)
    candidates = {c["partner_id"]: c for c in data["candidates"]}
    assert candidates["a"] == {"partner_id": "a", "eligible": True, "reasons": []}
    assert candidates["b"]["eligible"] is False
    assert any("territory" in r for r in candidates["b"]["reasons"])
    assert any("tiers" in r for r in candidates["b"]["reasons"])
    assert items[0]["data"]["external_id"] and items[0]["partner_id"] is None
