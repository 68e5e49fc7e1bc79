"""`make bench`, notifications section (issue 8): how fast the delivery worker drains 1,000 queued offers to
a local receiver.

A fresh PostgreSQL database and the bundled broker; lead_router's API and its router worker (which runs the
delivery worker) as real processes; one partner whose `webhook_url` is a receiver in this process answering
200 at once. 1,000 leads are posted (each offered to that partner, each staging a `leadrouter.lead.offered`
delivery) while the receiver counts arrivals; the figure is deliveries per second from the first arrival to
the last, plus how long after the last webhook was answered the last notification arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from bench.db import drop_database, fresh_database
from shared.broker import free_port
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.processes import ADMIN_TOKEN, Service, broker, service_env, unique_prefix
from tests.fixtures.receiver import receiving

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
OFFERS = int(os.environ.get("BENCH_NOTIFY_OFFERS", "1000"))


async def bench_notify() -> dict[str, Any]:
    arrivals: list[float] = []
    all_in = asyncio.Event()

    async def handle(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) >= OFFERS:
            all_in.set()
        return web.Response(text="ok")

    db_url, db_name = await fresh_database()
    tmp = Path(tempfile.mkdtemp(prefix="lr-bench-notify-"))
    try:
        async with receiving(handle) as hook:
            return await _run(db_url, tmp, hook, arrivals, all_in)
    finally:
        if db_name:
            await drop_database(db_name)


async def _run(db_url: str, tmp: Path, hook: str, arrivals: list[float], all_in: asyncio.Event) -> dict[str, Any]:
    """Start the processes, post the leads, wait for every notification; the figures."""
    with broker() as bootstrap:
        env = service_env(db_url, bootstrap, unique_prefix(), LEADROUTER_WEBHOOK_ALLOW_PRIVATE="true",
                          LEADROUTER_LOG_LEVEL="warning")
        api_port, worker_port = free_port(), free_port()
        api = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(api_port),
                                               "LEADROUTER_RUN_ROUTER": "false"}, api_port, tmp / "api.log")
        worker = Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(worker_port)},
                         worker_port, tmp / "worker.log")
        try:
            api.start()
            worker.start()
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
                body = partner_body(name="Acme", capacity={"max_open_leads": None},
                                    webhook_url=hook)
                (await http.put("/v1/partners/acme", json=body, headers=ADMIN)).raise_for_status()
                (await http.post("/v1/partners/acme/webhook-secret", headers=ADMIN)).raise_for_status()
                sem = asyncio.Semaphore(16)

                async def post(i: int) -> None:
                    async with sem:
                        (await http.post("/v1/webhooks/generic",
                                         json=lead_body(external_id=f"b-{i}"))).raise_for_status()

                started = time.monotonic()
                await asyncio.gather(*(post(i) for i in range(OFFERS)))
                posted = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), 300)
        finally:
            worker.stop()
            api.stop()
    if len(arrivals) < 2:
        return {"offers": OFFERS, "delivered": len(arrivals)}
    span = arrivals[-1] - arrivals[0]
    return {"offers": OFFERS, "delivered": len(arrivals),
            "deliveries_per_s": round((len(arrivals) - 1) / span, 1) if span > 0 else None,
            "posting_s": round(posted - started, 2),
            "last_notification_after_last_webhook_s": round(arrivals[-1] - posted, 2)}
