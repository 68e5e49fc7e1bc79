from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from services.sla_monitor.alert import service
from services.sla_monitor.alert.schemas import ALERT_KINDS, ALERT_STATUSES, AckIn, AlertRead
from services.sla_monitor.deps import AdminDep, SessionDep
from services.sla_monitor.hub import Hub
from shared.errors import BODY_PROBLEMS, problem_responses
from shared.pagination import CursorQuery, IdQuery, LimitQuery, Page, decode_time_cursor, time_cursor

router = APIRouter(prefix="/v1/alerts", tags=["SLA alerts (admin)"], dependencies=[AdminDep],
                   responses=problem_responses(401, 422))

StatusQuery = Annotated[str | None, Query(pattern="^(" + "|".join(ALERT_STATUSES) + ")$")]
KindQuery = Annotated[str | None, Query(pattern="^(" + "|".join(ALERT_KINDS) + ")$")]


@router.get("", response_model=Page[AlertRead])
async def list_alerts(session: SessionDep, status: StatusQuery = None, partner_id: IdQuery = None,
                      kind: KindQuery = None, lead_id: IdQuery = None, limit: LimitQuery = 50,
                      cursor: CursorQuery = None) -> Page[AlertRead]:
    """SLA breach alerts, newest breach first, filtered by status, partner, kind or lead."""
    items = await service.list_alerts(session, status=status, partner_id=partner_id, kind=kind, lead_id=lead_id,
                                      after=decode_time_cursor(cursor), limit=limit)
    next_cursor = time_cursor(items[-1].breached_at, items[-1].alert_id) if len(items) == limit else None
    return Page(items=items, next_cursor=next_cursor)


@router.get("/stream", response_class=StreamingResponse,
            responses={200: {"description": "Server-Sent Events", "content": {"text/event-stream": {}}}})
async def stream_alerts(request: Request, max_events: Annotated[int | None, Query(ge=1, le=10_000)] = None
                        ) -> StreamingResponse:
    """Server-Sent Events: one `alert` event (data: the alert JSON) for every new or changed alert from the
    moment of connecting, and a comment line every few seconds to keep proxies from closing the
    connection. `max_events` ends the stream after that many events. Every monitor instance's changes are
    on every instance's stream (each reads them from `<prefix>.sla`); after a reconnect, read
    `GET /v1/alerts` to catch up."""
    hub: Hub = request.app.state.hub
    keepalive = request.app.state.settings.sla_stream_keepalive_s

    async def events() -> AsyncIterator[bytes]:
        async with hub.broadcaster.subscribe() as sub:
            yield b"retry: 3000\n: connected\n\n"
            sent = 0
            while (max_events is None or sent < max_events) and not sub.overflowed:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), timeout=keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield b"event: alert\nid: " + item["alert_id"].encode() + b"\ndata: " + orjson.dumps(item) + b"\n\n"
                sent += 1

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/{alert_id}", response_model=AlertRead, responses=problem_responses(404))
async def get_alert(alert_id: str, session: SessionDep) -> AlertRead:
    """One alert."""
    return await service.get_alert(session, alert_id)


@router.post("/{alert_id}/ack", response_model=AlertRead, responses=problem_responses(*BODY_PROBLEMS, 404, 409))
async def ack_alert(alert_id: str, body: AckIn, session: SessionDep, request: Request) -> AlertRead:
    """Acknowledge an open alert: `{"by": "...", "note": "..."}`. It still resolves itself when the awaited
    step happens. Acknowledging again changes nothing; a resolved alert answers 409."""
    return await service.acknowledge(session, alert_id, body, settings=request.app.state.settings)
