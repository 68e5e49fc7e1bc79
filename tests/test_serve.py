"""The services' processes start with the collector tuned for latency (`shared.serve.tune_gc`), and export its
pauses."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys

import httpx

from shared.serve import GC_THRESHOLDS


def test_start_up_is_frozen_and_young_collections_are_fewer() -> None:
    """Checked in a process of its own, as a service runs it: the objects start-up built are out of every
    collection, and the young generation is collected at the tuned threshold."""
    script = ("import gc, json; import services.lead_router.app; from shared.serve import tune_gc; "
              "before = gc.get_freeze_count(); tune_gc(); "
              "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, frozen, thresholds = json.loads(out)
    assert before == 0 and frozen > 50_000  # the app's modules, classes and schemas
    assert tuple(thresholds) == GC_THRESHOLDS and GC_THRESHOLDS[0] > 700  # CPython's default is 700


async def test_collection_pauses_are_exported_by_generation(client: httpx.AsyncClient) -> None:
    def full_collections() -> float:
        m = re.search(r'^leadrouter_gc_pause_seconds_count\{generation="2"\} (\S+)$', text, re.M)
        return float(m.group(1)) if m else 0.0

    text = (await client.get("/metrics")).text
    before = full_collections()
    gc.collect()
    text = (await client.get("/metrics")).text
    assert full_collections() >= before + 1  # (one the collector started itself may come on top)
    assert re.search(r'^leadrouter_gc_pause_seconds_sum\{generation="2"\} (\S+)$', text, re.M)
