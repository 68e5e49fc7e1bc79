"""Running a service process: logging and uvicorn, the same for both services."""

from __future__ import annotations

import gc
import logging

import uvicorn
from fastapi import FastAPI

from shared.config import Settings
from shared.kafka import quiet_kafka_logs

# CPython's collector, tuned for latency. With its defaults (700, 10, 10) the API under `make bench` ran about
# 1,000 young collections, 90 middle and 7 full ones in a run of ~7,000 leads; each full one scanned ~200,000
# objects (most of them the modules, classes and schemas loaded at start) and stopped the process for 100-150 ms,
# a stall every lead in flight waited out. Frozen after start-up, and with fewer young collections (so fewer
# short-lived objects survive into the old generation), the same run had no full collection, ~80 young ones of
# at most 7 ms and 7 middle ones of at most 13 ms.
GC_THRESHOLDS = (5_000, 10, 10)


def tune_gc() -> None:
    """Freeze what start-up built (it lives as long as the process: no collection scans it again) and collect
    the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(app: FastAPI, settings: Settings, port: int) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiokafka narrates every group join and partition assignment at INFO; keep its warnings only.
    quiet_kafka_logs()
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # a line per request
    tune_gc()
    # an open SSE stream (the monitor's, or the ops page's proxied one) must not hold a shutdown forever
    uvicorn.run(app, host=settings.host, port=port, log_level=settings.log_level, access_log=False,
                timeout_graceful_shutdown=5)
