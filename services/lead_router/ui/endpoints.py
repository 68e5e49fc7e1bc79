"""The ops page at `/ui`, and the proxy through which it reaches the SLA monitor's alerts.

The page is three static files shipped in this package (`static/`): plain HTML, vanilla JS and CSS, with
charts drawn as inline SVG, so it works with no internet access. It talks to the admin API of this process
(`/v1/...`) directly, with the admin token the user typed in, as `Authorization: Bearer`.

Alerts live in sla_monitor, another process on another port, hence another origin. We proxy rather than
open CORS on the monitor:

- the browser's `EventSource` cannot send an `Authorization` header; the page reads the stream with
  `fetch()` instead, and a cross-origin `fetch()` with that header would need CORS preflights, an
  allow-list of origins and credentials on the monitor, which then must know where the page is served;
- with the proxy the browser sees one origin, the page's Content-Security-Policy can stay
  `connect-src 'self'`, and the monitor keeps listening on an internal address only.

The proxy adds no authority of its own: a request without a bearer token is refused here (401), anything
else is forwarded with the caller's `Authorization` header and the monitor checks the admin token itself.
Status code, content type and body come back as the monitor sent them; the event stream is relayed chunk by
chunk as it arrives and the upstream connection is closed when the browser goes away. An unreachable
monitor is a 502 problem. One `httpx.AsyncClient` per process, opened and closed by this router's lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FilePath
from typing import Annotated

import anyio
import httpx
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from shared.config import Settings
from shared.errors import AppError, NotFound, PayloadTooLarge, Unauthorized
from shared.security import bearer

log = logging.getLogger(__name__)

STATIC_DIR = FilePath(__file__).resolve().parent / "static"
# The only files served under /ui/static/: a fixed list, never a path built from the request.
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
PAGE_HEADERS = {
    # Everything comes from this origin; nothing is fetched from anywhere else, even by accident.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
MAX_ACK_BODY = 16 * 1024
# Plain calls: a few seconds at most. The stream: no read timeout (the monitor sends a comment line
# every few seconds; a dead peer is noticed by the socket), still a bounded connect.
CALL_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
STREAM_TIMEOUT = httpx.Timeout(connect=3.0, read=None, write=10.0, pool=3.0)
AlertId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class MonitorUnreachable(AppError):
    status, title, type_slug = 502, "Bad gateway", "monitor-unreachable"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    async with httpx.AsyncClient(base_url=settings.monitor_base_url, timeout=CALL_TIMEOUT) as client:
        app.state.monitor_client = client
        yield


router = APIRouter(include_in_schema=False, lifespan=_lifespan)


@router.get("/ui")
async def page() -> FileResponse:
    """The ops page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/ui/static/{name:path}")
async def asset(name: str) -> FileResponse:
    """One of the page's assets, by exact name."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound("No such asset.")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=PAGE_HEADERS)


def _client(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.monitor_client
    return client


def _forward_headers(request: Request) -> dict[str, str]:
    """The caller's bearer token (required) and content type; nothing else crosses."""
    authorization = request.headers.get("authorization")
    if not bearer(authorization):
        raise Unauthorized("A valid admin bearer token is required.")
    headers = {"Authorization": authorization or ""}
    if content_type := request.headers.get("content-type"):
        headers["Content-Type"] = content_type
    return headers


def _upstream_url(path: str, request: Request) -> httpx.URL:
    query = request.url.query
    return httpx.URL(path + (f"?{query}" if query else ""))


def _unreachable(exc: httpx.HTTPError) -> MonitorUnreachable:
    log.warning("sla_monitor unreachable: %s: %s", type(exc).__name__, exc)
    return MonitorUnreachable(f"The SLA monitor could not be reached ({type(exc).__name__}). Retry later.")


def _relayed(upstream: httpx.Response, content: bytes) -> Response:
    headers = {"Cache-Control": "no-store"}
    if challenge := upstream.headers.get("www-authenticate"):
        headers["WWW-Authenticate"] = challenge
    return Response(content, status_code=upstream.status_code, headers=headers,
                    media_type=upstream.headers.get("content-type"))


async def _call(request: Request, method: str, path: str, *, body: bytes | None = None) -> Response:
    headers = _forward_headers(request)
    try:
        upstream = await _client(request).request(method, _upstream_url(path, request), headers=headers,
                                                  content=body, timeout=CALL_TIMEOUT)
    except httpx.HTTPError as exc:
        raise _unreachable(exc) from exc
    return _relayed(upstream, upstream.content)


@router.get("/ui/api/alerts")
async def list_alerts(request: Request) -> Response:
    """`GET /v1/alerts` on the monitor, query string as given."""
    return await _call(request, "GET", "/v1/alerts")


@router.get("/ui/api/alerts/stream")
async def stream_alerts(request: Request) -> Response:
    """`GET /v1/alerts/stream` on the monitor, relayed as it arrives."""
    headers = _forward_headers(request) | {"Accept": "text/event-stream"}
    client = _client(request)
    outgoing = client.build_request("GET", _upstream_url("/v1/alerts/stream", request), headers=headers,
                                    timeout=STREAM_TIMEOUT)
    try:
        upstream = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        raise _unreachable(exc) from exc
    if upstream.status_code != 200:
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc
        finally:
            await upstream.aclose()
        return _relayed(upstream, content)

    async def close() -> None:
        with anyio.CancelScope(shield=True):  # also when the browser's disconnect cancelled the relay
            await upstream.aclose()

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:  # the monitor went away mid-stream: end ours, the page reconnects
            log.info("alert stream from sla_monitor ended: %s: %s", type(exc).__name__, exc)
        finally:
            await close()

    return StreamingResponse(relay(), media_type=upstream.headers.get("content-type", "text/event-stream"),
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                             background=BackgroundTask(close))


@router.post("/ui/api/alerts/{alert_id}/ack")
async def ack_alert(alert_id: AlertId, request: Request) -> Response:
    """`POST /v1/alerts/{alert_id}/ack` on the monitor, JSON body as given."""
    _forward_headers(request)  # no token, no reading of the body
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_ACK_BODY:
            raise PayloadTooLarge(f"An acknowledgement body is at most {MAX_ACK_BODY} bytes.")
    return await _call(request, "POST", f"/v1/alerts/{alert_id}/ack", body=bytes(body))
