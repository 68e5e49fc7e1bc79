"""The ops page's HTTP side in process: the page and its assets, and the alert proxy to the monitor."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import ADMIN_TOKEN

PROBLEM = "application/problem+json"


async def test_page_is_html_and_everything_it_loads_is_local(client: httpx.AsyncClient) -> None:
    page = await client.get("/ui")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assets = [ref for ref in refs if ref.startswith("/ui/static/")]
    assert sorted(assets) == ["/ui/static/app.css", "/ui/static/app.js"]
    assert set(refs) - set(assets) <= {"data:,"}
    bodies = [page.text]
    for path, kind in (("/ui/static/app.js", "text/javascript"), ("/ui/static/app.css", "text/css")):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(kind)
        assert response.headers["x-content-type-options"] == "nosniff"
        bodies.append(response.text)
    for body in bodies:  # no CDN, no web fonts, no other host: the page works with no internet access
        assert re.findall(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|url\(", body, re.IGNORECASE) == []


@pytest.mark.parametrize("path", [
    "/ui/static/..%2Fendpoints.py", "/ui/static/%2e%2e/endpoints.py", "/ui/static/%2E%2E%2F%2E%2E%2Fapp.py",
    "/ui/static/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "/ui/static/%2Fetc%2Fpasswd", "/ui/static/index.html",
    "/ui/static/static/app.js", "/ui/static/app.js%00.py", "/ui/static/__init__.py", "/ui/static/",
])
async def test_static_files_are_a_fixed_list_and_paths_cannot_escape(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert "import" not in response.text and "root:" not in response.text


@pytest.mark.parametrize("method,path", [
    ("GET", "/ui/api/alerts?status=open"), ("GET", "/ui/api/alerts/stream"), ("POST", "/ui/api/alerts/a1/ack"),
])
@pytest.mark.parametrize("authorization", [None, "Basic YWRtaW46YWRtaW4=", "Bearer ", "test-admin-token"])
async def test_alert_proxy_without_a_bearer_token_is_401(client: httpx.AsyncClient, method: str, path: str,
                                                         authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await client.request(method, path, headers=headers, json={"by": "me"} if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401


@pytest.mark.parametrize("method,path", [
    ("GET", "/ui/api/alerts?status=open"), ("GET", "/ui/api/alerts/stream"), ("POST", "/ui/api/alerts/a1/ack"),
])
async def test_alert_proxy_with_the_monitor_unreachable_is_502(client: httpx.AsyncClient, admin: dict[str, str],
                                                              method: str, path: str) -> None:
    response = await client.request(method, path, headers=admin, json={"by": "me"} if method == "POST" else None)
    assert response.status_code == 502
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert (body["status"], body["title"]) == (502, "Bad gateway")
    assert body["type"].endswith("/monitor-unreachable")
    assert "monitor" in body["detail"]


class FakeMonitor:
    """Answers for the monitor through an httpx MockTransport, and records what reached it."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.stream_closed = asyncio.Event()
        self.endless = False

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.headers.get("authorization") != f"Bearer {ADMIN_TOKEN}":
            return httpx.Response(401, json={"type": "x", "title": "Unauthorized", "status": 401, "detail": "no"},
                                  headers={"Content-Type": PROBLEM, "WWW-Authenticate": "Bearer"})
        if request.url.path == "/v1/alerts/stream":
            return httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=self.Events(self))
        if request.url.path.endswith("/ack"):
            return httpx.Response(200, json={"alert_id": "a1", "status": "acknowledged", **json.loads(request.content)})
        return httpx.Response(200, json={"items": [], "next_cursor": None})

    class Events(httpx.AsyncByteStream):
        def __init__(self, monitor: FakeMonitor) -> None:
            self.monitor = monitor

        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"retry: 3000\n: connected\n\n"
            yield b'event: alert\nid: a1\ndata: {"alert_id": "a1"}\n\n'
            while self.monitor.endless:
                await asyncio.sleep(0.01)
                yield b": keep-alive\n\n"

        async def aclose(self) -> None:
            self.monitor.stream_closed.set()


@pytest.fixture
async def monitor(app: FastAPI) -> AsyncIterator[FakeMonitor]:
    fake = FakeMonitor()
    real = app.state.monitor_client
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handle), base_url="http://monitor") as mock:
        app.state.monitor_client = mock
        try:
            yield fake
        finally:
            app.state.monitor_client = real


GOOD = {"Authorization": f"Bearer {ADMIN_TOKEN}"}  # lead_router checks it before reading a body


async def test_alert_list_passes_query_token_status_and_body_through(client: httpx.AsyncClient,
                                                                     monitor: FakeMonitor) -> None:
    response = await client.get("/ui/api/alerts?status=open&partner_id=a%20b&limit=500",
                                headers={**GOOD, "Cookie": "x=1", "X-Other": "no"})
    assert (response.status_code, response.json()) == (200, {"items": [], "next_cursor": None})
    assert response.headers["content-type"] == "application/json"
    [seen] = monitor.seen
    assert (seen.method, seen.url.path) == ("GET", "/v1/alerts")
    assert seen.url.query == b"status=open&partner_id=a%20b&limit=500"
    assert seen.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
    assert "cookie" not in seen.headers and "x-other" not in seen.headers

    refused = await client.get("/ui/api/alerts", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.headers["content-type"] == PROBLEM and refused.headers["www-authenticate"] == "Bearer"


async def test_ack_passes_the_json_body_through(client: httpx.AsyncClient, monitor: FakeMonitor) -> None:
    response = await client.post("/ui/api/alerts/a1/ack", json={"by": "ops page", "note": "calling them"}, headers=GOOD)
    assert response.status_code == 200
    assert response.json() == {"alert_id": "a1", "status": "acknowledged", "by": "ops page", "note": "calling them"}
    [seen] = monitor.seen
    assert (seen.method, seen.url.path, seen.headers["content-type"]) == ("POST", "/v1/alerts/a1/ack",
                                                                         "application/json")
    assert (await client.post("/ui/api/alerts/..%2Fx/ack", json={}, headers=GOOD)).status_code in (404, 422)
    too_big = await client.post("/ui/api/alerts/a1/ack", content=b"x" * 20_000, headers=GOOD)
    assert too_big.status_code == 413
    assert len(monitor.seen) == 1


async def test_stream_is_relayed(client: httpx.AsyncClient, monitor: FakeMonitor) -> None:
    response = await client.get("/ui/api/alerts/stream", headers=GOOD)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text == 'retry: 3000\n: connected\n\nevent: alert\nid: a1\ndata: {"alert_id": "a1"}\n\n'
    assert monitor.stream_closed.is_set()
    refused = await client.get("/ui/api/alerts/stream", headers={"Authorization": "Bearer wrong"})
    assert (refused.status_code, refused.headers["content-type"]) == (401, PROBLEM)


async def test_stream_sends_chunks_as_they_come_and_closes_upstream_when_the_browser_leaves(
        app: FastAPI, monitor: FakeMonitor) -> None:
    """Raw ASGI, so the test sees each chunk as it is sent and can hang up in the middle."""
    monitor.endless = True
    chunks: list[bytes] = []
    got_event = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await got_event.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if b"event: alert" in b"".join(chunks):
                got_event.set()

    path = "/ui/api/alerts/stream"
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(b"host", b"lead-router"),
                                          (b"authorization", f"Bearer {ADMIN_TOKEN}".encode())],
             "client": ("127.0.0.1", 1), "server": ("lead-router", 80), "state": {}}
    await asyncio.wait_for(app(scope, receive, send), timeout=5)
    assert chunks[0] == b"retry: 3000\n: connected\n\n"  # the first chunk went out on its own, before the second
    assert await asyncio.wait_for(monitor.stream_closed.wait(), timeout=2) is True
