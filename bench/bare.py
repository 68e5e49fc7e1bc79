"""The yardstick: a bare FastAPI endpoint that only validates the same webhook body."""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from services.lead_router.intake.schemas import LeadIn

app = FastAPI()


@app.post("/v1/webhooks/{source}", status_code=202)
async def receive(source: str, body: LeadIn) -> dict[str, str]:
    return {"status": "received", "source": source, "external_id": body.external_id}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), log_level="warning", access_log=False)
