"""`make bench`: durable ingest rate, webhook → `lead.routed` latency, and the bare-FastAPI yardstick.

Runs lead_router on PostgreSQL (a fresh database on 127.0.0.1:5432, or BENCH_DATABASE_URL) and the
bundled broker; the load comes from a separate process over HTTP; `lead.routed` is read from the topic
by an independent consumer. Figures are printed and written to var/bench.json; nothing is asserted."""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer

from bench.cpu import CpuMeter, peak_rss_mib, pids_named
from bench.db import drop_database, fresh_database
from bench.metrics import OFFERS as METRICS_OFFERS
from bench.metrics import bench_metrics
from bench.notify import OFFERS as NOTIFY_OFFERS
from bench.notify import bench_notify
from bench.sla import bench_sla
from shared.broker import free_port
from shared.events import CloudEvent
from tests.fixtures.builders import partner_body
from tests.fixtures.processes import ADMIN_TOKEN, Service, broker, service_env

ROOT = Path(__file__).resolve().parents[1]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
THROUGHPUT_LEADS = int(os.environ.get("BENCH_LEADS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
TARGET_RATE = float(os.environ.get("BENCH_RATE", "1000"))
LATENCY_SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "5"))
LATENCY_RATES = [float(r) for r in os.environ.get("BENCH_LATENCY_RATES", "200,1000").split(",") if r]
BURST = int(os.environ.get("BENCH_BURST", "50000"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"  # py-spy each process during the first latency phase
IDLE_SECONDS = 5  # the idle pipeline's CPU is measured over this long, before any load
# BENCH_ROUTE_ON_INTAKE=0: every lead waits for its lead.received event to be routed (the path before it)
ROUTE_ON_INTAKE = os.environ.get("BENCH_ROUTE_ON_INTAKE", "1") != "0"
# Whose outbox relay publishes: as `leadrouter up` chooses (the router worker while the API routes on intake,
# else the monitor), or BENCH_RELAY_LEADER=monitor / worker.
RELAY_LEADER = os.environ.get("BENCH_RELAY_LEADER") or ("worker" if ROUTE_ON_INTAKE else "monitor")


async def run_load(url: str, count: int, concurrency: int, rate: float) -> dict[str, Any]:
    """Run the load generator process; the event loop stays free for the topic watcher meanwhile."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out = fh.name
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.load", url, str(count), str(concurrency),
                                                str(rate), out, cwd=ROOT)
    if await proc.wait() != 0:
        raise RuntimeError("the load generator failed")
    return await asyncio.to_thread(_read_result, out)


def _read_result(path: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(Path(path).read_text())
    os.unlink(path)
    return result


class RoutedWatcher:
    """Records when each `lead.routed` arrives on the topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=5)
        self.seen: dict[str, float] = {}
        self.received: dict[str, float] = {}
        self.decided: dict[str, float] = {}

    async def run(self) -> None:
        await self.consumer.start()
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        event = CloudEvent.parse(record.value)
                        if event.name == "lead.routed" and event.subject:
                            self.seen.setdefault(event.subject, now)
                            self.decided.setdefault(event.subject, event.time.timestamp())
                        elif event.name == "lead.received" and event.subject:
                            self.received.setdefault(event.subject, now)
        finally:
            await self.consumer.stop()

    async def wait_for(self, lead_ids: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(i not in self.seen for i in lead_ids):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def scrape(processes: dict[str, Service]) -> dict[str, str]:
    """Each process's `/metrics` text."""
    async with httpx.AsyncClient(timeout=10) as http:
        return {name: (await http.get(f"{svc.url}/metrics")).text for name, svc in processes.items()}


def stage_sums(scraped: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(sum, count) of `leadrouter_stage_seconds` per `process/stage`."""
    out: dict[str, tuple[float, float]] = {}
    for name, text in scraped.items():
        for kind in ("sum", "count"):
            for m in re.finditer(rf'^leadrouter_stage_seconds_{kind}{{stage="(\w+)"}} (\S+)$', text, re.M):
                key = f"{name}/{m.group(1)}"
                total, count = out.get(key, (0.0, 0.0))
                out[key] = (total + float(m.group(2)), count) if kind == "sum" else (total, float(m.group(2)))
    return out


def db_counts(scraped: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(statements, transactions) each process has sent its database so far (`leadrouter_db_*`)."""
    out = {}
    for name, text in scraped.items():
        statements = sum(float(m) for m in re.findall(r"^leadrouter_db_statements_total (\S+)$", text, re.M))
        transactions = sum(float(m) for m in re.findall(r"^leadrouter_db_transactions_total{[^}]*} (\S+)$",
                                                        text, re.M))
        out[name] = (statements, transactions)
    return out


def gc_pauses(scraped: dict[str, str]) -> dict[str, tuple[float, float, float]]:
    """Per process, (pauses, seconds paused, pauses over 10 ms) of garbage collection so far, every generation."""
    out = {}
    for name, text in scraped.items():
        def total(pattern: str, text: str = text) -> float:
            return sum(float(m) for m in re.findall(pattern, text, re.M))
        count = total(r'^leadrouter_gc_pause_seconds_count{[^}]*} (\S+)$')
        short = total(r'^leadrouter_gc_pause_seconds_bucket{[^}]*le="0.01"[^}]*} (\S+)$')
        out[name] = (count, total(r'^leadrouter_gc_pause_seconds_sum{[^}]*} (\S+)$'), count - short)
    return out


def gc_between(before: dict[str, tuple[float, float, float]],
               after: dict[str, tuple[float, float, float]]) -> dict[str, str]:
    out = {}
    for name, (count, seconds, long) in after.items():
        c0, s0, l0 = before.get(name, (0.0, 0.0, 0.0))
        out[name] = f"{count - c0:.0f} pauses, {1000 * (seconds - s0):.0f} ms in all, {long - l0:.0f} over 10 ms"
    return out


def per_lead(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]],
             leads: int) -> dict[str, Any]:
    """Per lead, each process's statements and transactions (each transaction adds a BEGIN and a COMMIT round
    trip), and the round trips of them all."""
    out: dict[str, Any] = {}
    trips = 0.0
    for name, (statements, transactions) in after.items():
        s0, t0 = before.get(name, (0.0, 0.0))
        s, t = (statements - s0) / max(leads, 1), (transactions - t0) / max(leads, 1)
        out[name] = f"{s:.2f} statements, {t:.2f} transactions"
        trips += s + 2 * t
    out["round_trips_total"] = round(trips, 2)
    return out


def stage_means(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean milliseconds per observation of each process/stage between two scrapes."""
    means = {}
    for key, (total, count) in after.items():
        t0, c0 = before.get(key, (0.0, 0.0))
        if count > c0:
            means[key] = round(1000 * (total - t0) / (count - c0), 2)
    return means


async def burst(url: str, watcher: RoutedWatcher, processes: dict[str, Service],
                broker_pids: list[int]) -> dict[str, Any]:
    """BURST leads as fast as 64 connections can post them: every answer 2xx, every lead routed, how long
    after the last 202 the last `lead.routed` came, and the peak memory of every process."""
    load = await run_load(url, BURST, 64, 0)
    sent = list(load["sent"])
    await watcher.wait_for(sent, 600)
    routed = [watcher.seen[i] for i in sent if i in watcher.seen]
    rss = {name: peak_rss_mib(svc.proc.pid) for name, svc in processes.items() if svc.proc is not None}
    rss["broker"] = max((peak_rss_mib(p) for p in broker_pids), default=0.0)
    return {"leads": BURST, "non_2xx": load["errors"], "posted_per_s": round(load["rate"], 1),
            "routed": f"{len(routed)}/{len(sent)}",
            "last_202_to_last_routed_s": round(max(routed) - load["last_response_at"], 2) if routed else None,
            "peak_rss_mib": rss}


async def monitor_caught_up(monitor: Service, timeout_s: float = 300) -> float:
    """Seconds until the monitor's consumer group has no lag (a latency phase measures a steady pipeline,
    not one still digesting the run before it)."""
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        while time.monotonic() - began < timeout_s:
            text = (await http.get(f"{monitor.url}/metrics")).text
            m = re.search(r"^sla_consumer_lag (\S+)$", text, re.M)
            if m and float(m.group(1)) == 0:
                break
            await asyncio.sleep(0.5)
    return round(time.monotonic() - began, 1)


async def profile(processes: dict[str, Service], seconds: float) -> list[asyncio.subprocess.Process]:
    """`BENCH_PROFILE=1`: py-spy (pip install py-spy) records each process, collapsed stacks in var/profile/."""
    out = ROOT / "var" / "profile"
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, svc in processes.items():
        if svc.proc is None:
            continue
        path = out / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.txt"
        spies.append(await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(svc.proc.pid), "--format", "raw",
            "--duration", str(int(seconds)), "--rate", "200", "--nonblocking", "--output", str(path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL))
    return spies


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


async def bench() -> dict[str, Any]:
    db_url, db_name = await fresh_database()
    tmp = Path(tempfile.mkdtemp(prefix="lr-bench-"))
    results: dict[str, Any] = {}
    try:
        with broker() as bootstrap:
            prefix = f"bench{uuid.uuid4().hex[:6]}"
            port = free_port()
            env = service_env(db_url, bootstrap, prefix, LEADROUTER_ROUTER_PORT=str(port),
                              LEADROUTER_LOG_LEVEL="warning", LEADROUTER_TOPIC_PARTITIONS="6",
                              LEADROUTER_ROUTE_ON_INTAKE=str(ROUTE_ON_INTAKE).lower())
            results["route_on_intake"] = ROUTE_ON_INTAKE
            results["relay_leader"] = RELAY_LEADER
            leads = str(RELAY_LEADER == "worker").lower()
            router = Service("services.lead_router", {**env, "LEADROUTER_RUN_ROUTER": "false",
                                                      "LEADROUTER_RELAY_PREFERRED": "false"}, port,
                             tmp / "router.log").start()
            workers = []
            for n in range(WORKERS):  # BENCH_WORKERS=2: does a second router worker add anything?
                worker_port = free_port()
                workers.append(Service("services.lead_router", {**env, "LEADROUTER_ROUTER_PORT": str(worker_port),
                                                                "LEADROUTER_RELAY_PREFERRED": leads},
                                       worker_port, tmp / f"worker{n}.log").start())
            worker = workers[0]
            monitor_port = free_port()
            monitor = Service("services.sla_monitor", {**env, "LEADROUTER_MONITOR_PORT": str(monitor_port),
                                                       "LEADROUTER_RELAY_PREFERRED": ""},  # its default rank
                              monitor_port, tmp / "monitor.log").start()
            processes = {"intake (lead_router API)": router, "router worker": worker, "sla_monitor": monitor,
                         **{f"router worker {n + 1}": w for n, w in enumerate(workers[1:], start=1)}}
            groups = {name: [svc.proc.pid] for name, svc in processes.items() if svc.proc is not None}
            groups["broker"] = pids_named("tansu", containing=bootstrap)
            watcher = RoutedWatcher(bootstrap, f"{prefix}.leads")
            watch = asyncio.create_task(watcher.run())
            try:
                async with httpx.AsyncClient(base_url=router.url, timeout=10) as http:
                    for i in range(10):
                        body = partner_body(name=f"Partner {i}", capacity={"max_open_leads": None})
                        (await http.put(f"/v1/partners/p{i:02d}", json=body, headers=ADMIN)).raise_for_status()
                await run_load(router.url, 200, 8, 0)  # warm-up: connections, caches, the consumer group
                idle = CpuMeter(groups)  # what the pipeline burns with nothing to do, in cores
                idle.start()
                await asyncio.sleep(IDLE_SECONDS)
                results["idle_cpu_cores"] = {k: round(v / 1000, 3) for k, v in idle.stop(IDLE_SECONDS).items()}
                cpu = CpuMeter(groups)
                cpu.start()
                throughput = await run_load(router.url, THROUGHPUT_LEADS, CONCURRENCY, 0)
                await watcher.wait_for(list(throughput["sent"]), 120)
                await asyncio.sleep(1)  # the monitor's share: its clocks for these leads
                results["cpu_ms_per_lead"] = cpu.stop(THROUGHPUT_LEADS)
                # Latency at fixed rates (open loop), each below saturation or said to be at it.
                for n, target in enumerate(LATENCY_RATES):
                    caught_up = await monitor_caught_up(monitor)
                    if n == 0:
                        results["monitor_caught_up_after_ingest_s"] = caught_up
                    scraped = await scrape(processes)
                    stages_before, db_before, gc_before = stage_sums(scraped), db_counts(scraped), gc_pauses(scraped)
                    spies = await profile(processes, LATENCY_SECONDS) if PROFILE and n == 0 else []
                    phase_cpu = CpuMeter(groups)
                    phase_cpu.start()
                    phase = await run_load(router.url, int(target * LATENCY_SECONDS), CONCURRENCY * 4, target)
                    for spy in spies:
                        await spy.wait()
                    await watcher.wait_for(list(phase["sent"]), 120)
                    await asyncio.sleep(1)  # the monitor's share
                    phase_cpu_ms = phase_cpu.stop(len(phase["sent"]))
                    scraped = await scrape(processes)
                    stages_after, db_after, gc_after = stage_sums(scraped), db_counts(scraped), gc_pauses(scraped)
                    ms = [1000 * (watcher.seen[i] - t) for i, t in phase["sent"].items() if i in watcher.seen]
                    decided = [i for i in phase["sent"] if i in watcher.seen and i in watcher.decided]
                    to_decision = [1000 * (watcher.decided[i] - phase["sent"][i]) for i in decided]
                    to_topic = [1000 * (watcher.seen[i] - watcher.decided[i]) for i in decided]
                    results[f"at_{target:g}_per_s"] = {
                        "achieved_rate_per_s": round(phase["rate"], 1),
                        "webhook_to_routed_p50_ms": round(statistics.median(ms), 2) if ms else None,
                        "webhook_to_routed_p99_ms": round(pct(ms, 0.99), 2) if ms else None,
                        "http_p99_ms": round(phase["http_p99_ms"], 2), "errors": phase["errors"],
                        "webhook_to_decision_p50_p99_ms": [round(pct(to_decision, p), 1) for p in (0.5, 0.99)],
                        "decision_to_routed_on_topic_p50_p99_ms": [round(pct(to_topic, p), 1) for p in (0.5, 0.99)],
                        "routed_seen": f"{len(ms)}/{len(phase['sent'])}",
                        "cpu_ms_per_lead": phase_cpu_ms,
                        "db_per_lead": per_lead(db_before, db_after, len(phase["sent"])),
                        "gc_pauses": gc_between(gc_before, gc_after),
                        "stage_mean_ms (leadrouter_stage_seconds)": stage_means(stages_before, stages_after)}
                # The older figure: latency at half the closed-loop ingest rate, at most the target.
                rate = min(TARGET_RATE, 0.5 * throughput["rate"])
                await monitor_caught_up(monitor)
                latency = await run_load(router.url, int(rate * LATENCY_SECONDS), CONCURRENCY * 4, rate)
                await watcher.wait_for(list(latency["sent"]), 120)
                lat = [1000 * (watcher.seen[i] - t) for i, t in latency["sent"].items() if i in watcher.seen]
                ids = [i for i in latency["sent"] if i in watcher.seen and i in watcher.received]
                stages = {  # where the time goes, p50 per stage
                    "stage_webhook_to_received_on_topic_ms": [watcher.received[i] - latency["sent"][i] for i in ids],
                    "stage_received_to_routing_decision_ms": [watcher.decided[i] - watcher.received[i] for i in ids],
                    "stage_decision_to_routed_on_topic_ms": [watcher.seen[i] - watcher.decided[i] for i in ids],
                }
                results.update({k: round(1000 * statistics.median(v), 2) for k, v in stages.items() if v})
                results.update({
                    "ingest_leads_per_s": round(throughput["rate"], 1),
                    "ingest_errors": throughput["errors"],
                    "ingest_http_p50_ms": round(throughput["http_p50_ms"], 2),
                    "ingest_http_p99_ms": round(throughput["http_p99_ms"], 2),
                    "latency_phase_rate_per_s": round(latency["rate"], 1),
                    "webhook_to_routed_p50_ms": round(statistics.median(lat), 2) if lat else None,
                    "webhook_to_routed_p99_ms": round(pct(lat, 0.99), 2) if lat else None,
                    "routed_seen": f"{len(lat)}/{len(latency['sent'])}",
                })
                if BURST:
                    results["burst"] = await burst(router.url, watcher, processes, groups["broker"])
            finally:
                watch.cancel()
                router.stop()
                for w in workers:
                    w.stop()
                monitor.stop()
        bare_port = free_port()
        bare = await asyncio.create_subprocess_exec(sys.executable, "-m", "bench.bare", cwd=ROOT,
                                                    env={**os.environ, "BENCH_PORT": str(bare_port)})
        try:
            Service("bench.bare", {}, bare_port, tmp / "bare.log").wait_until(
                lambda: httpx.get(f"http://127.0.0.1:{bare_port}/healthz").status_code == 200, 20)
            await run_load(f"http://127.0.0.1:{bare_port}", 200, 8, 0)
            yardstick = await run_load(f"http://127.0.0.1:{bare_port}", THROUGHPUT_LEADS, CONCURRENCY, 0)
        finally:
            bare.terminate()
            await bare.wait()
        results["bare_fastapi_per_s"] = round(yardstick["rate"], 1)
        results["ratio_ingest_to_bare"] = round(results["ingest_leads_per_s"] / yardstick["rate"], 3)
    finally:
        if db_name:
            await drop_database(db_name)
    return results


def print_figures(figures: dict[str, Any], indent: str = "  ") -> None:
    for key, value in figures.items():
        if isinstance(value, dict):
            print(f"{indent}{key}")
            print_figures(value, indent + "  ")
        else:
            print(f"{indent}{key:<32} {value}")


def main() -> None:
    only_sla = os.environ.get("BENCH_ONLY_SLA") == "1"
    only_metrics = os.environ.get("BENCH_ONLY_METRICS") == "1"
    out = Path("var/bench.json")
    # Only the SLA (or metrics) section: the other figures of the last run are kept.
    only_notify = os.environ.get("BENCH_ONLY_NOTIFY") == "1"
    keep = only_sla or only_metrics or only_notify
    results = (json.loads(out.read_text()) if out.exists() else {}) if keep else asyncio.run(bench())
    if not keep:
        print("\nLeadrouter benchmark (lead_router on PostgreSQL + bundled broker, load from a separate process)")
        for key, value in results.items():
            print(f"  {key:<28} {value}")
    if os.environ.get("BENCH_SKIP_SLA") != "1" and not (only_metrics or only_notify):
        results["sla"] = asyncio.run(bench_sla())
        print("\nSLA monitor (100,000 open clocks)")
        for key, value in results["sla"].items():
            if isinstance(value, dict):
                print(f"  {key}")
                for name, figure in value.items():
                    print(f"    {name:<30} {figure}")
            else:
                print(f"  {key:<32} {value}")
    if os.environ.get("BENCH_SKIP_NOTIFY") != "1" and not (only_sla or only_metrics):
        results["notifications"] = asyncio.run(bench_notify())
        print(f"\nPartner notifications ({NOTIFY_OFFERS:,} offers queued, local receiver)")
        print_figures(results["notifications"])
    if os.environ.get("BENCH_SKIP_METRICS") != "1" and not (only_sla or only_notify):
        results["metrics"] = asyncio.run(bench_metrics())
        print(f"\nMetrics ({METRICS_OFFERS:,} offers, PostgreSQL)")
        print_figures(results["metrics"])
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
