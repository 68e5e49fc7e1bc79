"""No payload can break intake: every class of bad input gets a clear 4xx problem and changes nothing
(lead, timeline and outbox row counts unchanged), on PostgreSQL and SQLite."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.lead_router.source.signatures import sign_hubspot_v3, sign_mautic, sign_standard_webhooks
from shared.models import Lead, LeadEvent, OutboxMessage
from tests.fixtures.builders import assert_problem, count_rows, lead_body

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789").decode()
JSON = {"content-type": "application/json"}
GOOD = orjson.dumps(lead_body(external_id="good-1"))


async def counts(app: FastAPI) -> tuple[int, int, int]:
    return (await count_rows(app, Lead), await count_rows(app, OutboxMessage), await count_rows(app, LeadEvent))


@pytest.fixture
async def unchanged(app: FastAPI) -> AsyncIterator[None]:
    before = await counts(app)
    yield
    assert await counts(app) == before


def sw_headers(body: bytes, *, msg_id: str | None = None, ts: int | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if ts is None else ts
    return {**JSON, "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign_standard_webhooks(SECRET, msg_id, ts, body)}


@pytest.mark.parametrize(("body", "fragment"), [
    (b"", "empty"),
    (b"   \n", "empty"),
    (b"\xef\xbb\xbf" + GOOD, "byte-order mark"),
    (b'{"external_id": "x\xff"}', "UTF-8"),
    (GOOD + b" trailing", "JSON"),
    (GOOD + b"{}", "JSON"),
    (b'{"external_id": "x", "score": NaN}', "JSON"),
    (b'{"external_id": "x", "score": Infinity}', "JSON"),
    (b'{"score": -Infinity}', "JSON"),
    (b'{"score": 1' + b"0" * 4000 + b"}", "JSON"),
    (b'{"estimated_value": 1e400}', "JSON"),
    (b'{"score": 0.' + b"1" * 3000 + b"}", "digits"),
    (b"[" * 33 + b"]" * 33, "deep"),
    (b'{"a":' * 40 + b"1" + b"}" * 40, "deep"),
    (b"{", "JSON"),
    (b"null", "object"),
])
async def test_unreadable_bodies_are_400(client: httpx.AsyncClient, unchanged: None, body: bytes,
                                         fragment: str) -> None:
    problem = assert_problem(await client.post("/v1/webhooks/generic", content=body, headers=JSON), 400)
    assert fragment.lower() in problem["detail"].lower(), problem


@pytest.mark.parametrize("body", [orjson.dumps([lead_body()]), b'"a string"', b"42", b"true"])
async def test_not_an_object_is_422(client: httpx.AsyncClient, unchanged: None, body: bytes) -> None:
    problem = assert_problem(await client.post("/v1/webhooks/generic", content=body, headers=JSON), 422)
    assert [e["field"] for e in problem["errors"]] == ["body"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "multipart/form-data; boundary=x",
                                          "application/x-www-form-urlencoded", None])
async def test_wrong_or_missing_content_type_is_415(client: httpx.AsyncClient, unchanged: None,
                                                    content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    request = client.build_request("POST", "/v1/webhooks/generic", content=GOOD, headers=headers)
    if content_type is None:
        request.headers.pop("content-type", None)
    assert_problem(await client.send(request), 415)


async def test_too_large_with_and_without_content_length(client: httpx.AsyncClient, unchanged: None) -> None:
    big = b'{"x": "' + b"a" * (300 * 1024) + b'"}'
    assert_problem(await client.post("/v1/webhooks/generic", content=big, headers=JSON), 413)

    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 64 MiB if it were all read
            sent += 1
            yield b"a" * 65536

    problem = assert_problem(await client.post("/v1/webhooks/generic", content=stream(), headers=JSON), 413)
    assert "KiB" in problem["detail"] and sent < 10  # cut off once past the limit, not read to the end


@pytest.fixture
def signed_generic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_GENERIC", SECRET)


async def test_correctly_signed_invalid_utf8_is_400_not_401(client: httpx.AsyncClient, unchanged: None,
                                                            signed_generic: None) -> None:
    body = b'{"external_id": "caf\xe9"}'  # Latin-1, not UTF-8
    problem = assert_problem(await client.post("/v1/webhooks/generic", content=body, headers=sw_headers(body)), 400)
    assert "UTF-8" in problem["detail"]


def _mangle(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    def mangle(h: dict[str, str]) -> dict[str, str]:
        sig = h["webhook-signature"]
        value = {"no comma": sig.replace(",", ""), "bad base64": "v1,@@@not-base64@@@",
                 "unknown version": sig.replace("v1,", "v9,"), "truncated": sig[:-6], "empty": "",
                 "only version": "v1,", "many": " ".join(["v1,AAAA"] * 50), "spaces": "   ",
                 "non-ascii": "v1,\u00e9\u00e9"}[name]
        return {**h, "webhook-signature": value}
    return mangle


def _ts(value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda h: {**h, "webhook-timestamp": value}


@pytest.mark.parametrize("change", [
    *(_mangle(n) for n in ("no comma", "bad base64", "unknown version", "truncated", "empty", "only version",
                           "many", "spaces")),
    _ts(str(int(time.time()) - 301)), _ts(str(int(time.time()) + 400)), _ts("soon"), _ts("1e9"), _ts("nan"),
    _ts("-1"), _ts("9" * 400), _ts(""), _ts("1700000000.5"),
    lambda h: {k: v for k, v in h.items() if k != "webhook-id"},
    lambda h: {k: v for k, v in h.items() if k != "webhook-timestamp"},
    lambda h: {k: v for k, v in h.items() if k != "webhook-signature"},
])
async def test_every_malformed_signature_is_401(client: httpx.AsyncClient, unchanged: None, signed_generic: None,
                                                change: Callable[[dict[str, str]], dict[str, str]]) -> None:
    headers = change(sw_headers(GOOD))
    problem = assert_problem(await client.post("/v1/webhooks/generic", content=GOOD, headers=headers), 401)
    assert problem["detail"].startswith("Webhook signature verification failed")


async def test_replayed_webhook_id_with_fresh_signature_is_a_duplicate(client: httpx.AsyncClient, app: FastAPI,
                                                                       signed_generic: None) -> None:
    first = await client.post("/v1/webhooks/generic", content=GOOD, headers=sw_headers(GOOD, msg_id="msg_1"))
    assert first.status_code == 202
    other = orjson.dumps(lead_body(external_id="another"))
    again = await client.post("/v1/webhooks/generic", content=other,
                              headers=sw_headers(other, msg_id="msg_1", ts=int(time.time()) + 1))
    assert again.status_code == 200 and again.json()["lead_id"] == first.json()["lead_id"]
    assert await count_rows(app, Lead) == 1


@pytest.mark.parametrize("headers", [
    {}, {"X-HubSpot-Signature-v3": "abc"}, {"X-HubSpot-Signature-v3": "", "X-HubSpot-Request-Timestamp": ""},
    {"X-HubSpot-Signature-v3": "@@", "X-HubSpot-Request-Timestamp": "not-ms"},
    {"X-HubSpot-Signature-v3": "AAAA", "X-HubSpot-Request-Timestamp": "1"},
])
async def test_hubspot_malformed_signatures_are_401(client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str],
                                                    headers: dict[str, str]) -> None:
    source = {"adapter": "hubspot", "auth": {"type": "hubspot_v3", "secret": "hs-secret-123456"}}
    assert (await client.put("/v1/sources/hs", json=source, headers=admin)).status_code == 201
    before = await counts(app)
    body = b'{"vid": 1, "properties": {"email": {"value": "a@example.com"}}}'
    assert_problem(await client.post("/v1/webhooks/hs", content=body, headers={**JSON, **headers}), 401)
    # ... while the same body correctly signed gets past the signature (to the adapter's verdict)
    ts = str(int(time.time() * 1000))
    good = {**JSON, "X-HubSpot-Request-Timestamp": ts,
            "X-HubSpot-Signature-v3": sign_hubspot_v3("hs-secret-123456", "POST", "http://lead-router/v1/webhooks/hs",
                                                      body, ts)}
    assert (await client.post("/v1/webhooks/hs", content=body, headers=good)).status_code != 401
    assert (await counts(app))[0] <= before[0] + 1


@pytest.mark.parametrize("signature", [None, "", "x", "@@@", sign_mautic("wrong-secret", b"{}")])
async def test_mautic_malformed_signatures_are_401(client: httpx.AsyncClient, app: FastAPI, admin: dict[str, str],
                                                   signature: str | None) -> None:
    source = {"adapter": "mautic", "auth": {"type": "mautic", "secret": "mautic-secret-123"}}
    assert (await client.put("/v1/sources/mt", json=source, headers=admin)).status_code == 201
    before = await counts(app)
    headers = {**JSON, **({"Webhook-Signature": signature} if signature is not None else {})}
    assert_problem(await client.post("/v1/webhooks/mt", content=b"{}", headers=headers), 401)
    assert await counts(app) == before
