"""Bodies are bounded and credentials come first (issue 10): an unauthenticated or oversized body is refused
before it is read, on both services, and nothing is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from services.sla_monitor.app import create_app as create_monitor
from shared.config import Settings
from shared.models import Lead, Partner
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.apps import asgi_client, serving
from tests.fixtures.builders import assert_problem, count_rows, lead_body, make_partner, partner_auth


class Endless:
    """A body that would never end (200 MB and more), counting what the server pulled from it."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"x" * 65536
        while self.sent < 200 * 1024 * 1024:
            self.sent += len(chunk)
            yield chunk


@pytest.mark.parametrize("path", ["/v1/partners/acme", "/v1/routing/rules", "/v1/partner/leads/x/accept",
                                  "/v1/routing/simulate", "/ui/api/alerts/x/ack"])
async def test_no_credentials_no_body_read(client: httpx.AsyncClient, path: str) -> None:
    body = Endless()
    response = await client.put(path, content=body) if path.endswith(("acme", "rules")) else \
        await client.post(path, content=body)
    assert_problem(response, 401)
    assert body.sent <= 65536  # the first chunk at most: nothing was read past the headers


async def test_an_admin_body_is_capped(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI) -> None:
    body = Endless()
    assert_problem(await client.put("/v1/partners/acme", content=body, headers=admin), 413)
    assert body.sent < 1024 * 1024 and await count_rows(app, Partner) == 0
    big = {"Content-Length": str(10 * 1024 * 1024), **admin}
    assert_problem(await client.put("/v1/partners/acme", content=b"{}", headers=big), 413)
    wrong = {"Authorization": "Bearer not-the-token"}
    assert_problem(await client.put("/v1/partners/acme", content=Endless(), headers=wrong), 401)


async def test_a_partner_body_is_capped(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_partner(client, admin, "acme")
    auth = await partner_auth(client, admin, "acme")
    body = Endless()
    assert_problem(await client.post("/v1/partner/leads/x/reject", content=body, headers=auth), 413)
    assert body.sent < 1024 * 1024


async def test_webhooks_keep_their_own_limit_and_need_no_token(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = Endless()
    assert_problem(await client.post("/v1/webhooks/generic", content=body,
                                     headers={"content-type": "application/json"}), 413)
    assert body.sent < 1024 * 1024 and await count_rows(app, Lead) == 0
    assert (await client.post("/v1/webhooks/generic", json=lead_body())).status_code == 202


async def test_the_simulator_takes_a_thousand_leads(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_partner(client, admin, "acme")
    leads = {"leads": [lead_body(external_id=f"s-{i}", title="x" * 200) for i in range(1000)]}
    response = await client.post("/v1/routing/simulate", json=leads, headers=admin)
    assert response.status_code == 200, response.text[:500]


async def test_the_monitor_too(db_url: str) -> None:
    settings = Settings(database_url=db_url, admin_token=ADMIN_TOKEN, sla_run_kafka=False, sla_run_scheduler=False,
                        kafka_bootstrap="127.0.0.1:1", topic_prefix="test")
    async with serving(create_monitor(settings)) as monitor, asgi_client(monitor, "http://monitor") as client:
        body = Endless()
        assert_problem(await client.put("/v1/sla/policies/default", content=body), 401)
        assert body.sent <= 65536
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert_problem(await client.put("/v1/sla/policies/default", content=Endless(), headers=admin), 413)
