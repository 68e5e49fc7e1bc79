"""`/v1/sla/policies/{name}` on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.models import SlaPolicy
from tests.fixtures.builders import assert_problem, count_rows

POLICY = {"accept_within": "PT2H", "first_touch_within": "P1D", "report_back_every": "P1W", "clock": "calendar",
          "on_accept_breach": "recall"}




async def test_default_falls_back_to_the_builtin_until_stored(monitor: httpx.AsyncClient,
                                                               admin: dict[str, str]) -> None:
    got = await monitor.get("/v1/sla/policies/default", headers=admin)
    assert got.status_code == 200
    assert got.json() | {"updated_at": None} == {
        "name": "default", "accept_within": "PT4H", "first_touch_within": "PT24H", "report_back_every": "P7D",
        "clock": "business_hours", "on_accept_breach": "alert", "builtin": True, "updated_at": None}
    assert_problem(await monitor.get("/v1/sla/policies/acme", headers=admin), 404)


async def test_reading_a_policy_needs_the_admin_token(monitor: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}):
        assert_problem(await monitor.get("/v1/sla/policies/default", headers=headers), 401)


async def test_put_creates_then_replaces(monitor: httpx.AsyncClient, admin: dict[str, str]) -> None:
    created = await monitor.put("/v1/sla/policies/default", json=POLICY, headers=admin)
    assert created.status_code == 201, created.text
    assert {k: created.json()[k] for k in POLICY} == POLICY
    assert created.json()["builtin"] is False
    replaced = await monitor.put("/v1/sla/policies/default", json=POLICY | {"clock": "business_hours"}, headers=admin)
    assert replaced.status_code == 200
    assert (await monitor.get("/v1/sla/policies/default", headers=admin)).json()["clock"] == "business_hours"
    partner = await monitor.put("/v1/sla/policies/acme", json=POLICY, headers=admin)
    assert partner.status_code == 201
    assert (await monitor.get("/v1/sla/policies/acme", headers=admin)).json()["name"] == "acme"


async def test_put_needs_the_admin_token(monitor: httpx.AsyncClient, monitor_app: FastAPI) -> None:
    assert_problem(await monitor.put("/v1/sla/policies/default", json=POLICY), 401)
    wrong = {"Authorization": "Bearer nope"}
    assert_problem(await monitor.put("/v1/sla/policies/default", json=POLICY, headers=wrong), 401)
    assert await count_rows(monitor_app, SlaPolicy) == 0


@pytest.mark.parametrize(("change", "field"), [
    ({"accept_within": "4 hours"}, "accept_within"),
    ({"accept_within": "P1M"}, "accept_within"),
    ({"first_touch_within": "P1Y"}, "first_touch_within"),
    ({"report_back_every": "PT0S"}, "report_back_every"),
    ({"report_back_every": "-P1D"}, "report_back_every"),
    ({"clock": "sundial"}, "clock"),
    ({"on_accept_breach": "explode"}, "on_accept_breach"),
    ({"clock": "business_hours", "accept_within": "P1.5D"}, "accept_within"),
    ({"surprise": 1}, "surprise"),
])
async def test_invalid_policies_are_422_and_nothing_is_stored(monitor: httpx.AsyncClient, monitor_app: FastAPI,
                                                             admin: dict[str, str], change: dict[str, Any],
                                                             field: str) -> None:
    body = assert_problem(await monitor.put("/v1/sla/policies/default", json=POLICY | change, headers=admin), 422)
    assert field in [e["field"] for e in body["errors"]], body
    assert await count_rows(monitor_app, SlaPolicy) == 0


async def test_bad_names(monitor: httpx.AsyncClient, admin: dict[str, str]) -> None:
    assert_problem(await monitor.put("/v1/sla/policies/" + "x" * 65, json=POLICY, headers=admin), 422)
    assert_problem(await monitor.get("/v1/sla/policies/-bad", headers=admin), 422)
