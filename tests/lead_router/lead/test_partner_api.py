"""`/v1/partner/leads` (partner key): the lead's state machine and partner isolation, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.models import Lead, LeadEvent, LeadOffer, OutboxMessage
from tests.fixtures.builders import (
    assert_problem,
    count_rows,
    make_partner,
    partner_auth,
    post_lead,
    route_waiting,
    rows,
)

Headers = dict[str, str]




async def stored(app: FastAPI) -> tuple[int, int, int]:
    return (await count_rows(app, LeadEvent), await count_rows(app, OutboxMessage), await count_rows(app, LeadOffer))


async def offered_to_a(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> tuple[str, Headers, Headers]:
    """Partners `a` and `b`; one lead, offered to `a` (round robin starts at the lowest id)."""
    await make_partner(client, admin, "a")
    await make_partner(client, admin, "b")
    auth_a, auth_b = await partner_auth(client, admin, "a"), await partner_auth(client, admin, "b")
    lead_id = (await post_lead(client)).json()["lead_id"]
    assert await route_waiting(app) == 1
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (lead["status"], lead["partner_id"]) == ("offered", "a")
    return lead_id, auth_a, auth_b


def steps(lead_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/v1/partner/leads/{lead_id}"
    return [("GET", base, None), ("POST", f"{base}/accept", None),
            ("POST", f"{base}/reject", {"reason": "no_capacity"}),
            ("POST", f"{base}/activities", {"type": "first_touch", "channel": "call"}),
            ("POST", f"{base}/disposition", {"status": "working"})]


async def test_offer_accept_work_win(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    lead_id, auth_a, _ = await offered_to_a(client, admin, app)
    base = f"/v1/partner/leads/{lead_id}"

    listed = (await client.get("/v1/partner/leads", params={"status": "offered"}, headers=auth_a)).json()
    assert [item["lead_id"] for item in listed["items"]] == [lead_id] and listed["items"][0]["status"] == "offered"
    offered = (await client.get(base, headers=auth_a)).json()
    assert {k: offered["contact"][k] for k in ("first_name", "last_name", "email", "phone")} == dict.fromkeys(
        ("first_name", "last_name", "email", "phone"))
    assert offered["company"]["name"] == "Example Health" and offered["company"]["region"] == "CA"
    assert (offered["product"], offered["estimated_value"]) == ("storage", 120000)
    for item in listed["items"]:
        assert item["contact"]["email"] is None

    before = await stored(app)
    assert_problem(await client.post(f"{base}/activities", json={"type": "first_touch", "channel": "call"},
                                     headers=auth_a), 409)
    assert_problem(await client.post(f"{base}/disposition", json={"status": "working"}, headers=auth_a), 409)
    assert await stored(app) == before

    accepted = await client.post(f"{base}/accept", headers=auth_a)
    assert accepted.status_code == 200 and accepted.json() == {"lead_id": lead_id, "status": "accepted"}
    again = await client.post(f"{base}/accept", headers=auth_a)
    assert again.status_code == 200 and again.json() == accepted.json()
    shown = (await client.get(base, headers=auth_a)).json()
    assert shown["status"] == "accepted" and shown["accepted_at"] is not None
    assert (shown["contact"]["first_name"], shown["contact"]["last_name"]) == ("Dana", "Wu")
    assert shown["contact"]["email"].startswith("dana.wu+") and shown["contact"]["phone"] == "+1 415 555 0100"
    assert_problem(await client.post(f"{base}/reject", json={"reason": "other"}, headers=auth_a), 409)

    activity = await client.post(f"{base}/activities", headers=auth_a, json={
        "type": "first_touch", "channel": "call", "occurred_at": datetime.now(UTC).isoformat(), "note": "left a vm"})
    assert activity.status_code == 201, activity.text
    assert activity.json()["lead_id"] == lead_id and activity.json()["event_id"]
    [offer] = await rows(app, LeadOffer)
    assert (offer.partner_id, offer.status) == ("a", "accepted") and offer.first_touch_at is not None

    working = await client.post(f"{base}/disposition", json={"status": "working"}, headers=auth_a)
    assert working.status_code == 200 and working.json() == {"lead_id": lead_id, "status": "working"}
    assert (await client.post(f"{base}/activities", json={"type": "follow_up", "channel": "email"},
                              headers=auth_a)).status_code == 201
    won = await client.post(f"{base}/disposition", json={"status": "won", "amount": 25000}, headers=auth_a)
    assert won.status_code == 200 and won.json() == {"lead_id": lead_id, "status": "won"}
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert lead["status"] == "won" and lead["won_amount"] == 25000 and lead["closed_at"] is not None

    before = await stored(app)
    for body, path in (({"type": "follow_up", "channel": "call"}, "activities"), ({"status": "lost"}, "disposition"),
                       ({"status": "working"}, "disposition"), (None, "accept")):
        assert_problem(await client.post(f"{base}/{path}", json=body, headers=auth_a), 409)
    assert await stored(app) == before
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert [e["type"] for e in timeline] == ["lead.received", "lead.routed", "lead.accepted", "lead.activity",
                                             "lead.disposition", "lead.activity", "lead.disposition"]


async def test_other_partner_gets_404_like_an_unknown_lead(client: httpx.AsyncClient, admin: Headers,
                                                           app: FastAPI) -> None:
    lead_id, auth_a, auth_b = await offered_to_a(client, admin, app)
    before = await stored(app)
    for unknown in (str(uuid.uuid4()), "no-such-lead", "%00"):
        for method, path, body in steps(unknown):
            assert_problem(await client.request(method, path, json=body, headers=auth_a), 404)
    for method, path, body in steps(lead_id):
        problem = assert_problem(await client.request(method, path, json=body, headers=auth_b), 404)
        assert lead_id in problem["detail"]
    assert (await client.get("/v1/partner/leads", headers=auth_b)).json() == {"items": [], "next_cursor": None}
    # accepted by `a`: still invisible to `b`
    assert (await client.post(f"/v1/partner/leads/{lead_id}/accept", headers=auth_a)).status_code == 200
    for method, path, body in steps(lead_id):
        assert_problem(await client.request(method, path, json=body, headers=auth_b), 404)
    assert (await stored(app))[1] == before[1] + 1  # only a's accept wrote an event
    assert (await rows(app, Lead))[0].partner_id == "a"


async def test_reject_routes_on_to_the_next_partner(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    lead_id, auth_a, auth_b = await offered_to_a(client, admin, app)
    rejected = await client.post(f"/v1/partner/leads/{lead_id}/reject", headers=auth_a,
                                 json={"reason": "not_in_territory", "note": "we only do NorCal"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["lead_id"] == lead_id
    assert (await client.get("/v1/partner/leads", headers=auth_a)).json()["items"] == []

    assert await route_waiting(app) == 1
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (lead["status"], lead["partner_id"]) == ("offered", "b")
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert [e["type"] for e in timeline] == ["lead.received", "lead.routed", "lead.rejected", "lead.routed"]
    assert timeline[2]["partner_id"] == "a" and timeline[2]["data"]["reason"] == "not_in_territory"
    candidates = {c["partner_id"]: c for c in timeline[3]["data"]["candidates"]}
    assert candidates["b"]["eligible"] is True
    assert candidates["a"]["eligible"] is False and any("rejected" in r for r in candidates["a"]["reasons"])
    offers = await rows(app, LeadOffer, order_by=LeadOffer.offer_id)
    assert [(o.partner_id, o.status, o.reason) for o in offers] == [("a", "rejected", "not_in_territory"),
                                                                    ("b", "offered", None)]

    before = await stored(app)
    for method, path, body in steps(lead_id)[1:]:  # a's offer ended: its late steps are told why
        assert_problem(await client.request(method, path, json=body, headers=auth_a), 409)
    assert_problem(await client.get(f"/v1/partner/leads/{lead_id}", headers=auth_a), 404)  # but it sees nothing
    assert await stored(app) == before
    assert (await client.post(f"/v1/partner/leads/{lead_id}/accept", headers=auth_b)).json()["status"] == "accepted"

    # a second lead rejected by everyone who covers it ends unroutable, with the reason in its timeline
    await make_partner(client, admin, "c", territories=[{"country": "DE"}])
    lead2 = (await post_lead(client)).json()["lead_id"]
    auth = {"a": auth_a, "b": auth_b}
    for _ in range(2):
        await route_waiting(app)
        holder = (await client.get(f"/v1/leads/{lead2}", headers=admin)).json()["partner_id"]
        assert (await client.post(f"/v1/partner/leads/{lead2}/reject", json={"reason": "other"},
                                  headers=auth[holder])).status_code == 200
    await route_waiting(app)
    assert (await client.get(f"/v1/leads/{lead2}", headers=admin)).json()["status"] == "unroutable"
    last = (await client.get(f"/v1/leads/{lead2}/timeline", headers=admin)).json()["items"][-1]
    assert last["type"] == "lead.unroutable" and "no eligible partner" in last["data"]["reason"]
    assert not any(c["eligible"] for c in last["data"]["candidates"])


@pytest.mark.parametrize(("path", "body", "field"), [
    ("reject", {"reason": "too_busy"}, "reason"),
    ("reject", {}, "reason"),
    ("reject", {"reason": "other", "extra": 1}, "extra"),
    ("reject", {"reason": "other", "note": "x" * 2001}, "note"),
    ("activities", {"type": "call", "channel": "call"}, "type"),
    ("activities", {"type": "first_touch", "channel": "fax"}, "channel"),
    ("activities", {"type": "first_touch", "channel": "call", "occurred_at": "+1d"}, "occurred_at"),
    ("activities", {"type": "first_touch", "channel": "call", "occurred_at": "2026-01-01T10:00:00"}, "occurred_at"),
    ("activities", {"type": "first_touch", "channel": "call", "occurred_at": "FUTURE"}, "occurred_at"),
    ("activities", {"type": "first_touch", "channel": "call", "occurred_at": "2001-01-01T00:00:00Z"}, "occurred_at"),
    ("disposition", {"status": "lost", "amount": 100}, "amount"),
    ("disposition", {"status": "no_decision", "amount": 0}, "amount"),
    ("disposition", {"status": "won", "amount": -1}, "amount"),
    ("disposition", {"status": "closed"}, "status"),
    ("disposition", {"status": "won", "amount": "lots"}, "amount"),
])
async def test_invalid_step_body_is_422(client: httpx.AsyncClient, admin: Headers, app: FastAPI, path: str,
                                        body: dict[str, Any], field: str) -> None:
    lead_id, auth_a, _ = await offered_to_a(client, admin, app)
    if path != "reject":
        assert (await client.post(f"/v1/partner/leads/{lead_id}/accept", headers=auth_a)).status_code == 200
    if body.get("occurred_at") == "FUTURE":
        body = {**body, "occurred_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    before = await stored(app)
    state = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    response = await client.post(f"/v1/partner/leads/{lead_id}/{path}", json=body, headers=auth_a)
    problem = assert_problem(response, 422)
    assert field in {e["field"] for e in problem["errors"]}, problem["errors"]
    assert await stored(app) == before
    assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json() == state


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer lrk_00_x"},
                                     {"Authorization": "Bearer test-admin-token"}])
async def test_bad_partner_key_is_401(client: httpx.AsyncClient, admin: Headers, app: FastAPI,
                                      headers: Headers) -> None:
    lead_id, _, _ = await offered_to_a(client, admin, app)
    assert_problem(await client.get("/v1/partner/leads", headers=headers), 401)
    for method, path, body in steps(lead_id):
        assert_problem(await client.request(method, path, json=body, headers=headers), 401)
    assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["status"] == "offered"


async def test_partner_list_filters_and_pages(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await make_partner(client, admin, "a")
    auth = await partner_auth(client, admin, "a")
    ids = [(await post_lead(client)).json()["lead_id"] for _ in range(3)]
    await route_waiting(app)
    assert (await client.post(f"/v1/partner/leads/{ids[0]}/accept", headers=auth)).status_code == 200
    offered = (await client.get("/v1/partner/leads", params={"status": "offered"}, headers=auth)).json()["items"]
    assert {i["lead_id"] for i in offered} == set(ids[1:])
    accepted = (await client.get("/v1/partner/leads", params={"status": "accepted"}, headers=auth)).json()["items"]
    assert [i["lead_id"] for i in accepted] == [ids[0]] and accepted[0]["contact"]["email"].startswith("dana.wu+")
    seen, cursor = [], None
    while True:
        page = (await client.get("/v1/partner/leads", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                 headers=auth)).json()
        seen += [i["lead_id"] for i in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    assert_problem(await client.get("/v1/partner/leads", params={"status": "lost!"}, headers=auth), 422)
