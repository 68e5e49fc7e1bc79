"""Running a service process: logging and uvicorn, the same for both services."""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from shared.config import Settings
from shared.kafka import quiet_kafka_logs


def serve(app: FastAPI, settings: Settings, port: int) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiokafka narrates every group join and partition assignment at INFO; keep its warnings only.
    quiet_kafka_logs()
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # a line per request
    # an open SSE stream (the monitor's, or the ops page's proxied one) must not hold a shutdown forever
    uvicorn.run(app, host=settings.host, port=port, log_level=settings.log_level, access_log=False,
                timeout_graceful_shutdown=5)
