"""`/v1/sources`: configured sources, their secrets protected at rest and never shown."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from services.lead_router.app import create_app
from shared.config import Settings
from shared.models import Source
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.apps import asgi_client, serving
from tests.fixtures.builders import assert_problem, rows

HUBSPOT = {"adapter": "hubspot", "auth": {"type": "hubspot_v3", "secret": "hs-app-secret-0123456789",
                                          "signature_url": "https://leads.example.com/v1/webhooks/hubspot-emea"},
           "field_map": {"company.country": "properties.country.value"}, "default_campaign": "emea-inbound"}


async def test_create_replace_read_and_list(client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    created = await client.put("/v1/sources/hubspot-emea", json=HUBSPOT, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["source"] == "hubspot-emea" and body["adapter"] == "hubspot"
    assert body["auth"] == {"type": "hubspot_v3", "header": None,
                            "signature_url": "https://leads.example.com/v1/webhooks/hubspot-emea", "secret_set": True}
    assert body["field_map"] == HUBSPOT["field_map"] and body["default_campaign"] == "emea-inbound"
    [row] = await rows(app, Source)
    assert row.secret_ciphertext and "hs-app-secret" not in row.secret_ciphertext and row.token_sha256 is None

    # A replace that keeps the auth type may leave the secret out: the stored one stays.
    keep = {**HUBSPOT, "auth": {"type": "hubspot_v3"}, "default_campaign": None}
    replaced = await client.put("/v1/sources/hubspot-emea", json=keep, headers=admin)
    assert replaced.status_code == 200 and replaced.json()["auth"]["secret_set"] is True
    assert (await rows(app, Source))[0].secret_ciphertext == row.secret_ciphertext

    token = {"adapter": "marketo", "auth": {"type": "header_token", "header": "X-Api-Token",
                                            "secret": "marketo-token-abcdef"}}
    assert (await client.put("/v1/sources/marketo", json=token, headers=admin)).status_code == 201
    stored = {s.name: s for s in await rows(app, Source)}
    assert stored["marketo"].secret_ciphertext is None and len(stored["marketo"].token_sha256 or "") == 64

    one = await client.get("/v1/sources/marketo", headers=admin)
    assert one.status_code == 200 and one.json()["auth"]["header"] == "X-Api-Token"
    listed = (await client.get("/v1/sources", params={"limit": 1}, headers=admin)).json()
    assert [i["source"] for i in listed["items"]] == ["hubspot-emea"] and listed["next_cursor"]
    rest = (await client.get("/v1/sources", params={"cursor": listed["next_cursor"]}, headers=admin)).json()
    assert [i["source"] for i in rest["items"]] == ["marketo"] and rest["next_cursor"] is None
    for text in (created.text, replaced.text, one.text, str(listed), str(rest), caplog.text):
        assert "hs-app-secret" not in text and "marketo-token" not in text
    assert_problem(await client.get("/v1/sources/nope", headers=admin), 404)


@pytest.mark.parametrize("body, field", [
    ({**HUBSPOT, "adapter": "salesforce"}, "adapter"),
    ({"adapter": "hubspot", "auth": {"type": "hubspot_v3"}}, "auth.secret"),
    ({"adapter": "generic", "auth": {"type": "standard_webhooks", "secret": "not-a-whsec-secret"}}, "auth"),
    ({"adapter": "marketo", "auth": {"type": "header_token", "secret": "token-123456"}}, "auth"),
    ({"adapter": "form", "auth": {"type": "none", "secret": "whatever-123"}}, "auth"),
    ({**HUBSPOT, "field_map": {"company.revenue": "x"}}, "field_map"),
    ({**HUBSPOT, "extra": 1}, "extra"),
])
async def test_invalid_sources_are_refused(client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str],
                                           body: dict[str, object], field: str) -> None:
    problem = assert_problem(await client.put("/v1/sources/s1", json=body, headers=admin), 422)
    assert any(e["field"].startswith(field) for e in problem["errors"]), problem
    assert await rows(app, Source) == []


async def test_admin_only(client: httpx.AsyncClient) -> None:
    assert_problem(await client.put("/v1/sources/s1", json=HUBSPOT), 401)
    assert_problem(await client.get("/v1/sources"), 401)


async def test_hmac_secret_needs_a_secret_key(settings: Settings) -> None:
    async with serving(create_app(settings.model_copy(update={"secret_key": None}))) as app, \
            asgi_client(app, "http://lr") as client:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        problem = assert_problem(await client.put("/v1/sources/s1", json=HUBSPOT, headers=admin), 409)
        assert "LEADROUTER_SECRET_KEY" in problem["detail"]
        plain = {"adapter": "form", "auth": {"type": "none"}}
        assert (await client.put("/v1/sources/s2", json=plain, headers=admin)).status_code == 201
