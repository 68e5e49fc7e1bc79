"""`/v1/partners` (admin) through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from shared.models import OutboxMessage, Partner, PartnerApiKey
from tests.fixtures.builders import assert_problem, count_rows, make_partner, partner_auth, partner_body, rows


async def stored(app: FastAPI) -> tuple[int, int]:
    return await count_rows(app, Partner), await count_rows(app, OutboxMessage)


async def test_put_creates_then_replaces(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI) -> None:
    created = await client.put("/v1/partners/acme", json=partner_body(), headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["partner_id"] == "acme" and body["tier"] == "gold" and body["open_leads"] == 0
    assert body["territories"][0]["country"] == "US" and body["capacity"] == {"max_open_leads": 50}

    replaced = await client.put("/v1/partners/acme", json=partner_body(
        name="Acme EU", tier="platinum", territories=[{"country": "de", "regions": ["by"]}],
        timezone="Europe/Berlin", holiday_country="DE"), headers=admin)
    assert replaced.status_code == 200, replaced.text
    got = (await client.get("/v1/partners/acme", headers=admin)).json()
    assert got == replaced.json()
    assert (got["name"], got["tier"], got["timezone"]) == ("Acme EU", "platinum", "Europe/Berlin")
    assert (got["territories"][0]["country"], got["territories"][0]["regions"]) == ("DE", ["BY"])
    assert got["created_at"] == body["created_at"]

    messages = await rows(app, OutboxMessage, order_by=OutboxMessage.id)
    upserted = ("leadrouter.partner.upserted", "test.partners", "acme")
    assert [(m.type, m.topic, m.key) for m in messages] == [upserted] * 2
    event = orjson.loads(messages[-1].payload)
    assert event["subject"] == "acme" and event["data"]["tier"] == "platinum"


async def test_concurrent_creates_of_one_partner(client: httpx.AsyncClient, admin: dict[str, str],
                                                 app: FastAPI) -> None:
    responses = await asyncio.gather(*(client.put("/v1/partners/acme", json=partner_body(name=f"Acme {i}"),
                                                  headers=admin) for i in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 201], [r.text for r in responses]
    assert await stored(app) == (1, 4)


async def test_get_unknown_partner_is_404(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    assert_problem(await client.get("/v1/partners/nobody", headers=admin), 404)


async def test_list_pages_with_cursor(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    ids = [f"p{i:02d}" for i in range(5)]
    for partner_id in reversed(ids):
        await make_partner(client, admin, partner_id)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get("/v1/partners", params=params, headers=admin)
        assert page.status_code == 200, page.text
        seen += [p["partner_id"] for p in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    everything = (await client.get("/v1/partners", headers=admin)).json()
    assert [p["partner_id"] for p in everything["items"]] == ids and everything["next_cursor"] is None


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 501}, {"limit": "x"}, {"cursor": "garbage!"},
                                    {"cursor": "WzFd"}, {"cursor": "WyJhIiwiYiJd"}, {"cursor": "WyJcdTAwMDAiXQ"}])
async def test_list_bad_paging_is_422(client: httpx.AsyncClient, admin: dict[str, str],
                                      params: dict[str, Any]) -> None:
    """`WzFd` is `[1]`, `WyJhIiwiYiJd` `["a","b"]`, `WyJcdTAwMDAiXQ` `["\\u0000"]`: not cursors this list made."""
    await make_partner(client, admin, "acme")
    assert_problem(await client.get("/v1/partners", params=params, headers=admin), 422)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="},
                                     {"Authorization": "Bearer "}])
@pytest.mark.parametrize(("method", "path"), [("PUT", "/v1/partners/acme"), ("GET", "/v1/partners"),
                                              ("GET", "/v1/partners/acme"), ("POST", "/v1/partners/acme/api-keys"),
                                              ("DELETE", "/v1/partners/acme/api-keys/abc")])
async def test_admin_token_required(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI,
                                    headers: dict[str, str], method: str, path: str) -> None:
    await make_partner(client, admin, "acme")
    before = await stored(app)
    response = await client.request(method, path, json=partner_body(name="Hijacked"), headers=headers)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert await stored(app) == before
    assert (await client.get("/v1/partners/acme", headers=admin)).json()["name"] == "Acme Solutions"


@pytest.mark.parametrize(("path", "body", "field"), [
    ("acme", partner_body(tier="diamond"), "tier"),
    ("acme", partner_body(timezone="Mars/Olympus_Mons"), "timezone"),
    ("acme", partner_body(timezone="../../etc/passwd"), "timezone"),
    ("acme", partner_body(colour="red"), "colour"),
    ("acme", partner_body(territories=[{"country": "USA"}]), "territories.0.country"),
    ("acme", partner_body(territories=[{"country": "US", "state": "CA"}]), "territories.0.state"),
    ("acme", partner_body(capacity={"max_open_leads": -1}), "capacity.max_open_leads"),
    ("acme", partner_body(business_hours={"days": [0, 8], "start": "09:00", "end": "17:00"}), "business_hours.days"),
    ("acme", partner_body(business_hours={"days": [1], "start": "18:00", "end": "09:00"}), "business_hours"),
    ("acme", partner_body(business_hours={"days": [1], "start": "9am", "end": "17:00"}), "business_hours.start"),
    ("acme", partner_body(holiday_country="XX"), "holiday_country"),
    ("acme", partner_body(fiscal_year_start_month=13), "fiscal_year_start_month"),
    ("acme", partner_body(webhook_url="not a url"), "webhook_url"),
    ("acme", partner_body(name=""), "name"),
    ("acme", partner_body(webhook_url="https://example.com/" + "a" * 2000), "webhook_url"),
    ("acme", partner_body(capacity={"max_open_leads": 2**40}), "capacity.max_open_leads"),
    ("acme", partner_body(fiscal_year_start_month=2**70), "fiscal_year_start_month"),
    ("acme", partner_body(name="Acme\x00"), "name"),
    # upper-casing lengthens `ß` to `SS`: the length is checked again after it (it was a 500)
    ("acme", partner_body(territories=[{"country": "DE", "regions": ["ßßßßßß"]}]), "territories.0.regions.0"),
    ("acme", partner_body(territories=[{"country": "DE", "postal_prefixes": ["ß" * 12]}]),
     "territories.0.postal_prefixes.0"),
    ("acme", {"tier": "gold"}, "name"),
    ("bad%20id", partner_body(), "partner_id"),
    ("-acme", partner_body(), "partner_id"),
    ("a" * 65, partner_body(), "partner_id"),
])
async def test_invalid_partner_is_422_and_writes_nothing(client: httpx.AsyncClient, admin: dict[str, str],
                                                         app: FastAPI, path: str, body: dict[str, Any],
                                                         field: str) -> None:
    await make_partner(client, admin, "acme")
    before = await stored(app)
    response = await client.put(f"/v1/partners/{path}", json=body, headers=admin)
    problem = assert_problem(response, 422)
    assert any(e["field"].removeprefix("path.") == field for e in problem["errors"]), problem["errors"]
    assert await stored(app) == before
    assert (await client.get("/v1/partners/acme", headers=admin)).json()["tier"] == "gold"


@pytest.mark.parametrize("content", [b"{", b"[]", b"null"])
async def test_unreadable_partner_body_is_422(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI,
                                              content: bytes) -> None:
    response = await client.put("/v1/partners/acme", content=content,
                                headers={**admin, "content-type": "application/json"})
    assert_problem(response, 422)
    assert await stored(app) == (0, 0)


async def test_api_key_lifecycle(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI) -> None:
    await make_partner(client, admin, "acme")
    created = await client.post("/v1/partners/acme/api-keys", headers=admin)
    assert created.status_code == 201, created.text
    key_id, api_key = created.json()["key_id"], created.json()["api_key"]
    assert key_id in api_key
    auth = {"Authorization": f"Bearer {api_key}"}

    assert (await client.get("/v1/partner/leads", headers=auth)).status_code == 200
    [row] = await rows(app, PartnerApiKey)
    secret = api_key.split("_", 2)[2]
    assert row.key_id == key_id and row.partner_id == "acme" and row.revoked_at is None
    assert secret not in row.secret_hash and api_key not in row.secret_hash and len(row.secret_hash) == 64

    other = await partner_auth(client, admin, "acme")  # a second key keeps working after the first is revoked
    assert (await client.delete(f"/v1/partners/acme/api-keys/{key_id}", headers=admin)).status_code == 204
    assert_problem(await client.get("/v1/partner/leads", headers=auth), 401)
    assert (await client.get("/v1/partner/leads", headers=other)).status_code == 200
    # revoking again is harmless; the row stays, marked revoked
    assert (await client.delete(f"/v1/partners/acme/api-keys/{key_id}", headers=admin)).status_code == 204
    assert (await rows(app, PartnerApiKey, PartnerApiKey.key_id == key_id))[0].revoked_at is not None


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/v1/partners/acme/api-keys/0123456789abcdef"),
    ("DELETE", "/v1/partners/nobody/api-keys/{key_id}"),
    ("DELETE", "/v1/partners/acme/api-keys/%00"),
    ("POST", "/v1/partners/nobody/api-keys"),
])
async def test_unknown_key_or_partner_is_404(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI,
                                             method: str, path: str) -> None:
    await make_partner(client, admin, "acme")
    await make_partner(client, admin, "other")
    key_id = (await client.post("/v1/partners/acme/api-keys", headers=admin)).json()["key_id"]
    response = await client.request(method, path.format(key_id=key_id), headers=admin)
    assert_problem(response, 404)
    assert (await rows(app, PartnerApiKey))[0].revoked_at is None


@pytest.mark.parametrize("token", ["nonsense", "lrk_", "lrk_abc_", "lrk_0123456789abcdef_wrong",
                                   "lrk_%00_x", "lrk_" + "a" * 200 + "_x"])
async def test_bad_partner_key_is_401(client: httpx.AsyncClient, admin: dict[str, str], token: str) -> None:
    await make_partner(client, admin, "acme")
    await partner_auth(client, admin, "acme")
    response = await client.get("/v1/partner/leads", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401)


async def test_a_deactivated_partners_keys_open_nothing(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_partner(client, admin, "acme")
    auth = await partner_auth(client, admin, "acme")
    assert (await client.get("/v1/partner/leads", headers=auth)).status_code == 200
    await make_partner(client, admin, "acme", active=False)
    assert_problem(await client.get("/v1/partner/leads", headers=auth), 401)
    assert_problem(await client.get("/v1/partner/scorecard", headers=auth), 401)
    await make_partner(client, admin, "acme", active=True)
    assert (await client.get("/v1/partner/leads", headers=auth)).status_code == 200
