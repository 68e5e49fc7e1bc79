"""Load generator, run as its own process (aiohttp: httpx was the bottleneck): posts leads over HTTP
and writes what it measured as JSON.

`python -m bench.load URL COUNT CONCURRENCY RATE OUT` — RATE 0 means as fast as the server answers
(closed loop); otherwise requests are started on a fixed schedule (open loop)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests.fixtures.builders import lead_body


async def main(url: str, count: int, concurrency: int, rate: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    bodies = [json.dumps(lead_body(external_id=f"bench-{run}-{i}", email=f"buyer-{run}-{i}@example.com")).encode()
              for i in range(count)]  # every lead another person: one open lead per person would merge them
    sent: dict[str, float] = {}
    latencies: list[float] = []
    errors = 0
    last = 0.0
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url=url, connector=connector, timeout=timeout) as http:
        semaphore = asyncio.Semaphore(concurrency)

        async def post(i: int) -> None:
            nonlocal errors, last
            async with semaphore:
                start = time.time()
                async with http.post("/v1/webhooks/generic", data=bodies[i],
                                     headers={"content-type": "application/json"}) as response:
                    payload = await response.json(content_type=None)
                done = time.time()
                latencies.append(done - start)
                last = max(last, done)
                if response.status != 202:
                    errors += 1
                    return
                if payload.get("lead_id"):
                    sent[payload["lead_id"]] = start

        began = time.perf_counter()
        tasks = []
        for i in range(count):
            if rate:
                delay = began + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"count": count, "errors": errors, "elapsed_s": elapsed, "rate": count / elapsed,
            "http_p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
            "http_p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
            "sent": sent, "last_response_at": last}


if __name__ == "__main__":
    url, count, concurrency, rate, out = sys.argv[1:6]
    Path(out).write_text(json.dumps(asyncio.run(main(url, int(count), int(concurrency), float(rate)))))
