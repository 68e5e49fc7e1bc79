"""`POST /v1/webhooks/{source}` through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from standardwebhooks.webhooks import Webhook

from shared.models import Lead, LeadEvent, OutboxMessage, WebhookReceipt
from tests.fixtures.builders import assert_problem, count_rows, lead_body, make_partner, post_lead, route_waiting, rows


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def signed(secret: str, payload: str, *, at: datetime | None = None, msg_id: str | None = None) -> dict[str, str]:
    at = at or datetime.now(UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, at, payload), "content-type": "application/json"}


async def stored(app: FastAPI) -> tuple[int, int, int]:
    """(leads, outbox rows, timeline rows): what a rejected request must leave untouched."""
    return (await count_rows(app, Lead), await count_rows(app, OutboxMessage), await count_rows(app, LeadEvent))




async def test_receive_stores_lead_event_and_timeline(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await post_lead(client, external_id="mkto-1", score=82)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "received" and body["duplicate"] is False
    lead_id = body["lead_id"]
    assert uuid.UUID(lead_id)

    [lead] = await rows(app, Lead)
    assert (lead.lead_id, lead.source, lead.external_id, lead.status) == (lead_id, "generic", "mkto-1", "received")
    assert lead.company["country"] == "US" and lead.contact["email"].startswith("dana.wu+")
    [message] = await rows(app, OutboxMessage)
    assert (message.type, message.topic, message.key) == ("leadrouter.lead.received", "test.leads", lead_id)
    event = orjson.loads(message.payload)
    assert event["subject"] == lead_id and event["data"]["external_id"] == "mkto-1"
    [entry] = await rows(app, LeadEvent)
    assert (entry.type, entry.lead_id, entry.event_id) == ("lead.received", lead_id, message.event_id)


async def test_same_external_id_is_a_duplicate(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = lead_body(external_id="dup-1")
    first = await client.post("/v1/webhooks/generic", json=body)
    assert first.status_code == 202
    again = await client.post("/v1/webhooks/generic", json=body)
    assert again.status_code == 200, again.text
    assert again.json() == {"lead_id": first.json()["lead_id"], "status": "received", "duplicate": True}
    assert await stored(app) == (1, 1, 1)
    # the same external id from another source (another person) is another lead
    other = await post_lead(client, source="hubspot", external_id="dup-1")
    assert other.status_code == 202 and other.json()["lead_id"] != first.json()["lead_id"]


async def test_concurrent_deliveries_make_one_lead(client: httpx.AsyncClient, app: FastAPI) -> None:
    body = lead_body(external_id="race-1")
    responses = await asyncio.gather(*(client.post("/v1/webhooks/generic", json=body,
                                                   headers={"webhook-id": "msg-race"}) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 202], [r.text for r in responses]
    assert len({r.json()["lead_id"] for r in responses}) == 1
    assert await stored(app) == (1, 1, 1)
    assert await count_rows(app, WebhookReceipt) == 1


async def test_same_webhook_id_is_a_duplicate(client: httpx.AsyncClient, app: FastAPI) -> None:
    first = await post_lead(client, headers={"webhook-id": "msg-42"}, external_id="a-1")
    assert first.status_code == 202
    again = await post_lead(client, headers={"webhook-id": "msg-42"}, external_id="a-2")
    assert again.status_code == 200, again.text
    assert again.json()["lead_id"] == first.json()["lead_id"] and again.json()["duplicate"] is True
    assert await stored(app) == (1, 1, 1)
    assert await count_rows(app, WebhookReceipt) == 1


async def test_overlong_webhook_id_is_rejected(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await post_lead(client, headers={"webhook-id": "m" * 201})
    problem = assert_problem(response, 422)
    assert [e["field"] for e in problem["errors"]] == ["webhook-id"]
    assert await stored(app) == (0, 0, 0)
    assert (await post_lead(client, headers={"webhook-id": "m" * 200})).status_code == 202


async def test_signed_webhook_is_accepted(client: httpx.AsyncClient, app: FastAPI,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret()
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_GENERIC", secret)
    payload = orjson.dumps(lead_body(external_id="signed-1")).decode()
    response = await client.post("/v1/webhooks/generic", content=payload, headers=signed(secret, payload))
    assert response.status_code == 202, response.text
    assert await stored(app) == (1, 1, 1)


def _unsigned(secret: str, payload: str) -> dict[str, str]:
    return {"content-type": "application/json"}


def _wrong_key(secret: str, payload: str) -> dict[str, str]:
    return signed(new_secret(), payload)


def _tampered(secret: str, payload: str) -> dict[str, str]:
    return signed(secret, payload.replace("signed", "forged"))


def _stale(secret: str, payload: str) -> dict[str, str]:
    return signed(secret, payload, at=datetime.now(UTC) - timedelta(minutes=10))


def _future(secret: str, payload: str) -> dict[str, str]:
    return signed(secret, payload, at=datetime.now(UTC) + timedelta(minutes=10))


def _garbage_signature(secret: str, payload: str) -> dict[str, str]:
    return {**signed(secret, payload), "webhook-signature": "not-a-signature"}


def _bad_base64(secret: str, payload: str) -> dict[str, str]:
    return {**signed(secret, payload), "webhook-signature": "v1,%%%not base64%%%"}


def _bad_timestamp(secret: str, payload: str) -> dict[str, str]:
    return {**signed(secret, payload), "webhook-timestamp": "yesterday"}


@pytest.mark.parametrize("headers", [_unsigned, _wrong_key, _tampered, _stale, _future, _garbage_signature,
                                     _bad_base64, _bad_timestamp])
async def test_bad_signature_is_401_and_stores_nothing(client: httpx.AsyncClient, app: FastAPI,
                                                        monkeypatch: pytest.MonkeyPatch, headers: Any) -> None:
    secret = new_secret()
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_GENERIC", secret)
    payload = orjson.dumps(lead_body(external_id="signed-1")).decode()
    response = await client.post("/v1/webhooks/generic", content=payload, headers=headers(secret, payload))
    assert_problem(response, 401)
    assert await stored(app) == (0, 0, 0)
    assert await count_rows(app, WebhookReceipt) == 0


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe{}", b""])
async def test_signed_but_unreadable_body_is_rejected(client: httpx.AsyncClient, app: FastAPI,
                                                       monkeypatch: pytest.MonkeyPatch, payload: bytes) -> None:
    """A correctly signed body that is not UTF-8 JSON is bad input (400), never a 500."""
    secret = new_secret()
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_GENERIC", secret)
    headers = signed(secret, payload.decode("latin-1"))
    response = await client.post("/v1/webhooks/generic", content=payload, headers=headers)
    assert response.status_code in (400, 401), response.text
    assert_problem(response, response.status_code)
    assert await stored(app) == (0, 0, 0)


async def test_body_over_256_kib_is_413(client: httpx.AsyncClient, app: FastAPI) -> None:
    big = orjson.dumps(lead_body(title="x" * 300, note="n" * (256 * 1024)))
    response = await client.post("/v1/webhooks/generic", content=big, headers={"content-type": "application/json"})
    assert_problem(response, 413)

    async def chunks() -> Any:  # no content-length: the limit holds while streaming too
        for _ in range(5):
            yield b" " * (64 * 1024)
        yield big

    response = await client.post("/v1/webhooks/generic", content=chunks(),
                                 headers={"content-type": "application/json"})
    assert_problem(response, 413)
    assert await stored(app) == (0, 0, 0)


@pytest.mark.parametrize("payload", [b"{not json", b"", b"\xff\xfe"])
async def test_invalid_json_is_400(client: httpx.AsyncClient, app: FastAPI, payload: bytes) -> None:
    response = await client.post("/v1/webhooks/generic", content=payload, headers={"content-type": "application/json"})
    assert_problem(response, 400)
    assert await stored(app) == (0, 0, 0)


def _without(path: str) -> dict[str, Any]:
    body = lead_body()
    if "." in path:
        outer, inner = path.split(".")
        del body[outer][inner]
    else:
        del body[path]
    return body


@pytest.mark.parametrize(("body", "fields"), [
    (_without("external_id"), {"external_id"}),
    (_without("email"), {"email"}),
    (_without("company.name"), {"company.name"}),
    (_without("company.country"), {"company.country"}),
    ({"first_name": "Dana"}, {"external_id", "email", "company"}),
    (lead_body(email="not-an-email"), {"email"}),
    (lead_body(company={"country": "Atlantis"}), {"company.country"}),  # "USA" is normalized to US
    (lead_body(score=-1, estimated_value=-5), {"score", "estimated_value"}),
    (lead_body(occurred_at="2026-11-20T15:04:05"), {"occurred_at"}),
    (lead_body(external_id="a\x00b"), {"external_id"}),
    (lead_body(company={"name": "Acme\x00"}, campaign="\x00"), {"company.name", "campaign"}),
    (lead_body(occurred_at="0001-01-01T00:00:00+01:00"), {"occurred_at"}),
    (lead_body(occurred_at="9999-12-31T23:59:59-01:00"), {"occurred_at"}),
    (lead_body(external_id="x" * 201), {"external_id"}),
    ([lead_body()], {"body"}),
    ("a string", {"body"}),
])
async def test_invalid_lead_is_422_naming_fields(client: httpx.AsyncClient, app: FastAPI, body: Any,
                                                 fields: set[str]) -> None:
    response = await client.post("/v1/webhooks/generic", json=body)
    problem = assert_problem(response, 422)
    assert {e["field"] for e in problem["errors"]} >= fields
    assert await stored(app) == (0, 0, 0)


@pytest.mark.parametrize(("email", "status"), [(" dana.wu@example.com ", 202), ("\tdana.wu@example.com", 202),
                                                ("\t@example.com", 422), ("dana wu@example.com", 422)])
async def test_an_email_is_checked_trimmed_and_refused_by_the_services_rule(
        client: httpx.AsyncClient, email: str, status: int) -> None:
    """The documented pattern (`^[^@]+@[^@]+\\.[^@]+$`) is checked on the trimmed value. `"\\t@example.com"`
    matches it as sent and not once trimmed: a `value_error` (a rule of the service's), not a
    `string_pattern_mismatch`, which would say the document and the validation disagree (Schemathesis)."""
    response = await client.post("/v1/webhooks/generic", json=lead_body(email=email))
    assert response.status_code == status, response.text
    if status == 422:
        assert [(e["field"], e["type"]) for e in response.json()["errors"]] == [("email", "value_error")]


@pytest.mark.parametrize("source", ["Bad Source", "-x", "a" * 65])
async def test_bad_source_is_422(client: httpx.AsyncClient, app: FastAPI, source: str) -> None:
    response = await post_lead(client, source=source)
    assert_problem(response, 422)
    assert await stored(app) == (0, 0, 0)


async def test_nurturing_lead_is_routed_when_rescored(client: httpx.AsyncClient, admin: dict[str, str],
                                                      app: FastAPI) -> None:
    await make_partner(client, admin, "acme")
    rules = {"qualification": {"min_score": 50}, "rules": [{"name": "all", "when": {}}]}
    assert (await client.put("/v1/routing/rules", json=rules, headers=admin)).status_code == 200
    person = {"external_id": "nurture-1", "email": "nurture-1@example.com"}
    first = await post_lead(client, **person, score=20)
    lead_id = first.json()["lead_id"]
    await route_waiting(app)
    assert (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["status"] == "nurturing"

    same_score = await post_lead(client, **person, score=20)
    assert same_score.json() == {"lead_id": lead_id, "status": "nurturing", "duplicate": True}
    again = await post_lead(client, **person, score=80)
    assert again.status_code == 200 and again.json()["lead_id"] == lead_id and again.json()["duplicate"]
    await route_waiting(app)
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (lead["status"], lead["partner_id"], lead["score"]) == ("offered", "acme", 80)
    assert await count_rows(app, Lead) == 1
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    assert [e["type"] for e in timeline] == ["lead.received", "lead.nurturing", "lead.updated", "lead.received",
                                             "lead.routed"]
    assert timeline[2]["data"] == {"changes": {"score": {"from": 20, "to": 80}}}


async def test_repeat_of_a_routed_lead_updates_it_without_rerouting(client: httpx.AsyncClient,
                                                                    admin: dict[str, str], app: FastAPI) -> None:
    await make_partner(client, admin, "acme")
    body = lead_body(external_id="r-1", score=30)
    lead_id = (await client.post("/v1/webhooks/generic", json=body)).json()["lead_id"]
    await route_waiting(app)
    before = await stored(app)
    same = await client.post("/v1/webhooks/generic", json=body)
    assert same.json() == {"lead_id": lead_id, "status": "offered", "duplicate": True}
    assert await stored(app) == before  # nothing new: nothing recorded
    again = await client.post("/v1/webhooks/generic", json={**body, "score": 90})
    assert again.json() == {"lead_id": lead_id, "status": "offered", "duplicate": True}
    leads, outbox, timeline = await stored(app)
    assert (leads, outbox, timeline) == (before[0], before[1] + 1, before[2] + 1)  # one lead.updated
    lead = (await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()
    assert (lead["score"], lead["status"], lead["partner_id"]) == (90, "offered", "acme")


async def test_concurrent_webhooks_are_group_committed_without_losing_or_doubling(
        client: httpx.AsyncClient, app: FastAPI) -> None:
    """Many webhooks at once share transactions (group commit): every new lead is stored once, every
    repeat (same external_id or same webhook-id, even within one batch) answers with the first lead."""
    bodies = [lead_body(external_id=f"burst-{i}") for i in range(30)]
    repeats = [bodies[0]] * 5
    same_hook = [lead_body(external_id=f"hooked-{i}") for i in range(3)]
    responses = await asyncio.gather(
        *(client.post("/v1/webhooks/generic", json=b) for b in bodies + repeats),
        *(client.post("/v1/webhooks/generic", json=b, headers={"webhook-id": "msg_burst"}) for b in same_hook))
    by_external: dict[str, set[str]] = {}
    for body, response in zip(bodies + repeats + same_hook, responses, strict=True):
        assert response.status_code in (200, 202), response.text
        by_external.setdefault(body["external_id"], set()).add(response.json()["lead_id"])
    assert all(len(ids) == 1 for ids in by_external.values())
    hooked = {r.json()["lead_id"] for r in responses[-3:]}
    assert len(hooked) == 1
    assert sum(r.status_code == 202 for r in responses) == 31
    assert await count_rows(app, Lead) == 31
    assert await count_rows(app, OutboxMessage) == 31


async def test_unconfigured_sources_are_refused_when_so_configured(
        client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """With `LEADROUTER_UNCONFIGURED_SOURCES=reject` only a source with a secret takes leads: an unsigned post
    to a made-up source (`generic2` next to a signed `generic`) is 404 and stores nothing."""
    secret = new_secret()
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_GENERIC", secret)
    app.state.settings = app.state.settings.model_copy(update={"unconfigured_sources": "reject"})
    assert_problem(await post_lead(client, "generic2"), 404)
    assert await stored(app) == (0, 0, 0)
    payload = orjson.dumps(lead_body(external_id="signed-2")).decode()
    response = await client.post("/v1/webhooks/generic", content=payload, headers=signed(secret, payload))
    assert response.status_code == 202, response.text
    app.state.settings = app.state.settings.model_copy(update={"unconfigured_sources": "accept"})
    assert (await post_lead(client, "generic2")).status_code == 202  # `make run`: any source name
