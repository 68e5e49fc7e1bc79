"""`make bench`, metrics section: how long the metrics endpoints take over 1,000,000 offers on PostgreSQL
(target: `GET /v1/metrics/partners`, 90 days, 500 partners, ≤ 250 ms).

A fresh, migrated database gets 500 partners and BENCH_METRICS_OFFERS leads (default 1,000,000), each with
one offer, written server-side (`INSERT ... SELECT` over `generate_series`, no ORM) into the real tables in
`offered_at` order, as a live table fills, then `VACUUM ANALYZE` (what autovacuum does to an insert-mostly
table; without it the first reads would also be setting hint bits). Offers are spread uniformly over the
last 365 days, so the default 90-day window holds about a quarter of them. `lead_events` stays empty: no
metric reads it.

Then the real lead_router process (no broker: its router and relay are off; /readyz would report the broker
unreachable, so only /healthz is waited on) answers over HTTP 2 warm-up and BENCH_METRICS_CALLS (10)
sequential calls per endpoint: p50 and max in ms; and which indexes those calls read (pg_stat_user_indexes).
Afterwards, in-process, both paths of `offer_figures` are timed over the 90- and the 366-day window and four
monthly windows: the PostgreSQL one the service takes (one LATERAL statement over the covering index) and
the portable one SQLite takes (four statements, also timed one by one), checked to give the same figures,
and explained (`EXPLAIN (ANALYZE, BUFFERS)`, written to var/bench-metrics-plan.txt).
"""
from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from bench.db import drop_database, fresh_database
from shared.broker import free_port
from shared.db import create_engine
from shared.models import utcnow
from tests.fixtures.processes import ADMIN_TOKEN, Service, service_env

OFFERS = int(os.environ.get("BENCH_METRICS_OFFERS", "1000000"))
PARTNERS = 500
CALLS = int(os.environ.get("BENCH_METRICS_CALLS", "10"))
WARMUP = 2
TARGET_MS = 250.0
PLAN_FILE = Path("var/bench-metrics-plan.txt")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
REASONS = ("not_in_territory", "no_capacity", "not_qualified", "duplicate", "bad_contact_data", "existing_customer",
           "other")
SOURCES = ("web_form", "partner_portal", "events", "referral", "paid_search")

PARTNERS_SQL = """
INSERT INTO partners (partner_id, name, tier, active, territories, products, industries, max_open_leads, timezone,
                      business_hours, holiday_country, fiscal_year_start_month, webhook_url, operating_periods,
                      objectives, created_at, updated_at)
SELECT 'p' || lpad(i::text, 3, '0'), 'Partner ' || i,
       CASE WHEN i < 25 THEN 'platinum' WHEN i < 100 THEN 'gold' WHEN i < 250 THEN 'silver' ELSE 'registered' END,
       true, '[{"country": "US"}]'::json, '["storage"]'::json, '["healthcare"]'::json, NULL, 'UTC',
       '{"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"}'::json, 'US', 1 + i % 12, NULL, NULL,
       '[]'::json, now() - interval '400 days', now() - interval '400 days'
FROM generate_series(0, $1 - 1) AS i
"""

# One row per lead and its offer, every random draw made once (a materialized CTE), the columns derived
# from the draws so that lead and offer agree. Mix: 60% accepted, 25% rejected, 5% recalled, 10% pending;
# accepted: accept_s 60 s..1 day (skewed early; the accept clock, 4 h, met by about half), 80% touched
# (first touch up to 2 days after the accept; the first-touch clock, 24 h, ended for 90% of accepted),
# 50% closed (won 35%, lost 45%, no decision 20%). Partners get skewed volumes (p000 the most).
GENERATE_SQL = """
CREATE UNLOGGED TABLE bench_gen AS
WITH r AS MATERIALIZED (
    SELECT g, random() AS us, random() AS up, random() AS ut, random() AS u1, random() AS u2, random() AS u3,
           random() AS u4, random() AS u5, random() AS u6, random() AS u7, random() AS u8
    FROM generate_series(1, $1) AS g),
s AS (
    SELECT r.*, now() - ut * interval '365 days' AS offered_at,
           CASE WHEN us < 0.60 THEN 'accepted' WHEN us < 0.85 THEN 'rejected' WHEN us < 0.90 THEN 'recalled'
                ELSE 'offered' END AS status,
           60 + 86340 * u1 * u1 * u1 AS answer_s
    FROM r),
t AS (
    SELECT s.*,
           status = 'accepted' AND u3 < 0.8 AS touched,
           CASE WHEN status = 'accepted' AND u6 < 0.5 THEN
                CASE WHEN u2 < 0.35 THEN 'won' WHEN u2 < 0.80 THEN 'lost' ELSE 'no_decision' END END AS outcome
    FROM s)
SELECT g, gen_random_uuid()::text AS lead_id,
       'p' || lpad(least($2 - 1, floor($2 * up * up))::int::text, 3, '0') AS partner_id,
       status, offered_at,
       CASE WHEN status IN ('accepted', 'rejected') THEN offered_at + answer_s * interval '1 second'
            WHEN status = 'recalled' THEN offered_at + interval '4 hours' END AS responded_at,
       CASE WHEN status = 'rejected' THEN ($3::text[])[1 + floor(u2 * 7)::int] END AS reason,
       CASE WHEN status = 'accepted' THEN answer_s END AS accept_s,
       CASE WHEN touched THEN answer_s + 172800 * u4 * u4 END AS first_touch_s,
       CASE WHEN status IN ('accepted', 'rejected') THEN CASE WHEN answer_s <= 14400 THEN 'met' ELSE 'missed' END
            WHEN status = 'recalled' THEN 'missed' END AS accept_sla,
       CASE WHEN status = 'accepted' AND u5 < 0.9 THEN
            CASE WHEN touched AND answer_s + 172800 * u4 * u4 <= 86400 THEN 'met' ELSE 'missed' END
       END AS first_touch_sla,
       outcome,
       CASE WHEN outcome = 'won' THEN round((1000 + 99000 * u7)::numeric, 2)::float8 END AS amount,
       CASE WHEN outcome IS NOT NULL THEN least(now(), offered_at + answer_s * interval '1 second'
                                                + u7 * interval '60 days') END AS closed_at,
       touched, u3, u8
FROM t
"""

LEADS_SQL = """
INSERT INTO leads (lead_id, source, external_id, status, partner_id, score, product, estimated_value, campaign,
                   company, contact, occurred_at, created_at, updated_at, routed_at, accepted_at, closed_at,
                   won_amount)
SELECT lead_id, ($1::text[])[1 + g % 5], 'ext-' || g,
       CASE status WHEN 'accepted' THEN coalesce(outcome, CASE WHEN touched THEN 'working' ELSE 'accepted' END)
                   WHEN 'rejected' THEN CASE WHEN u3 < 0.6 THEN 'nurturing' ELSE 'unroutable' END
                   WHEN 'recalled' THEN 'nurturing'
                   ELSE 'offered' END,
       CASE WHEN status IN ('accepted', 'offered') THEN partner_id END,
       (g * 37) % 101, 'storage', 1000 * (1 + g % 200),
       CASE WHEN (g / 7) % 10 = 0 THEN NULL ELSE 'campaign-' || lpad(((g / 5) % 20)::text, 2, '0') END,
       json_build_object('name', 'Company ' || g, 'country', 'US'),
       json_build_object('email', 'lead' || g || '@example.com'),
       offered_at - (5 + 600 * u8) * interval '1 second',
       offered_at - (1 + 60 * u8) * interval '1 second',
       coalesce(closed_at, offered_at + (first_touch_s * interval '1 second'), responded_at, offered_at),
       offered_at,
       CASE WHEN status = 'accepted' THEN responded_at END,
       closed_at,
       CASE WHEN outcome = 'won' THEN amount END
FROM bench_gen ORDER BY offered_at
"""

OFFERS_SQL = """
INSERT INTO lead_offers (lead_id, partner_id, status, offered_at, responded_at, reason, first_touch_at, accept_s,
                         first_touch_s, accept_sla, first_touch_sla, outcome, amount, closed_at)
SELECT lead_id, partner_id, status, offered_at, responded_at, reason,
       offered_at + first_touch_s * interval '1 second', accept_s, first_touch_s, accept_sla, first_touch_sla,
       outcome, amount, closed_at
FROM bench_gen ORDER BY offered_at
"""


async def load(conn: asyncpg.Connection, offers: int) -> dict[str, Any]:
    """The partners, leads and offers, written by the database itself; seconds per step."""
    out: dict[str, Any] = {}
    t0 = t = time.monotonic()
    await conn.execute(PARTNERS_SQL, PARTNERS)
    await conn.execute(GENERATE_SQL, offers, PARTNERS, list(REASONS))
    out["load_generate_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    await conn.execute(LEADS_SQL, list(SOURCES))
    out["load_leads_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    await conn.execute(OFFERS_SQL)
    out["load_offers_s"] = round(time.monotonic() - t, 1)
    await conn.execute("DROP TABLE bench_gen")
    t = time.monotonic()
    for table in ("partners", "leads", "lead_offers"):
        await conn.execute(f"VACUUM ANALYZE {table}")
    out["load_vacuum_analyze_s"] = round(time.monotonic() - t, 1)
    out["load_total_s"] = round(time.monotonic() - t0, 1)
    return out


# --- the endpoints, over HTTP, on the real process ---

def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(statistics.median(values), 1), "max_ms": round(max(values), 1)}


async def _timed(http: httpx.AsyncClient, path: str) -> tuple[list[float], dict[str, Any]]:
    """2 warm-up calls, then CALLS sequential ones; the wall time of each (request to last byte read)."""
    times: list[float] = []
    body: dict[str, Any] = {}
    for i in range(WARMUP + CALLS):
        t = time.perf_counter()
        response = await http.get(path, headers=ADMIN)
        elapsed = 1000 * (time.perf_counter() - t)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:500]}")
        if i >= WARMUP:
            times.append(elapsed)
        body = response.json()
    return times, body


async def time_endpoints(db_url: str, tmp: Path) -> dict[str, Any]:
    port = free_port()
    # No broker: the router consumer and the outbox relay are off, nothing else in the process needs one.
    # /readyz still reports the (unreachable) broker, so readiness is /healthz plus a first metrics answer.
    env = service_env(db_url, f"127.0.0.1:{free_port()}", f"benchmx{uuid.uuid4().hex[:6]}",
                      LEADROUTER_ROUTER_PORT=str(port), LEADROUTER_LOG_LEVEL="warning",
                      LEADROUTER_RUN_ROUTER="false", LEADROUTER_RUN_RELAY="false")
    router = Service("services.lead_router", env, port, tmp / "lead_router.log")
    await asyncio.to_thread(router.start, wait_ready=False)
    out: dict[str, Any] = {}
    try:
        now = utcnow()
        year_ago = (now - timedelta(days=366)).isoformat()  # a day's margin: every loaded offer is in it
        async with httpx.AsyncClient(base_url=router.url, timeout=120) as http:
            endpoints = {
                "partners_90d": "/v1/metrics/partners?limit=500",
                "partners_365d": f"/v1/metrics/partners?limit=500&from={year_ago.replace('+', '%2B')}",
                "partner_periods_month": "/v1/metrics/partners/p000?period=month",
                "sources_90d": "/v1/metrics/sources?limit=500",
            }
            for name, path in endpoints.items():
                times, body = await _timed(http, path)
                figures: dict[str, Any] = {"path": path, **_ms(times)}
                items = body["items"]
                if name.startswith("partners_"):
                    figures["partners"] = len(items)
                    figures["offers_in_window"] = sum(item["offered"] for item in items)
                elif name == "partner_periods_month":
                    figures["periods"] = [item["period"] for item in items]
                    figures["offers_of_p000"] = sum(item["offered"] for item in items)
                else:
                    figures["rows"] = len(items)
                    figures["leads_in_window"] = sum(item["leads"] for item in items)
                out[name] = figures
    finally:
        await asyncio.to_thread(router.stop)
    target = out["partners_90d"]["p50_ms"]
    out["meets_250ms_target"] = target <= TARGET_MS
    return out


# --- where the time goes: both paths of `offer_figures`, in-process ---

class Captured:
    """Every statement an engine sends, its parameters and how long it took (asyncpg fetches in execute)."""

    def __init__(self, engine: Any) -> None:
        self.statements: list[tuple[str, Any, float]] = []
        self._t = 0.0
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, *args: Any) -> None:
        self._t = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        self.statements.append((statement, parameters, 1000 * (time.perf_counter() - self._t)))


PATHS = {"postgresql": "_offer_figures_postgres", "portable": "_offer_figures_portable"}
PORTABLE_QUERIES = ("counts", "rejected_by_reason", "accept_s_percentiles", "first_touch_s_percentiles")
Sent = dict[str, list[tuple[str, Any]]]  # per path, the statements of its last run


async def breakdown(db_url: str, windows: list[tuple[datetime, datetime]], runs: int, *, ranking: bool
                    ) -> tuple[dict[str, Any], Sent]:
    """Both paths of `offer_figures` over the same windows, in-process, alternately (the shared machine's noise
    hits them alike): p50 ms of each, the portable one per statement, how many (window, partner) figures
    differ between them; with `ranking`, the whole `partner_ranking` (which takes the PostgreSQL path)."""
    from services.lead_router.metrics import service
    from services.lead_router.metrics.repository import MetricsRepository
    from shared.config import Settings

    engine = create_engine(db_url)
    captured = Captured(engine)
    settings = Settings(database_url=db_url)
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    per_query: dict[str, list[float]] = {name: [] for name in PORTABLE_QUERIES}
    wholes: list[float] = []
    figures: dict[str, Any] = {}
    sent: Sent = {}
    try:
        async with AsyncSession(engine) as session:
            repo = MetricsRepository(session)
            for i in range(1 + runs):
                for name, method in PATHS.items():
                    captured.statements.clear()
                    t = time.perf_counter()
                    figures[name] = await getattr(repo, method)(windows)
                    elapsed = 1000 * (time.perf_counter() - t)
                    sent[name] = [(s, p) for s, p, _ in captured.statements]
                    if i >= 1:
                        times[name].append(elapsed)
                        if name == "portable":
                            for query, (_, _, ms) in zip(PORTABLE_QUERIES, captured.statements, strict=True):
                                per_query[query].append(ms)
                if ranking:
                    t = time.perf_counter()
                    await service.partner_ranking(session, settings, windows[0])
                    wholes.append(1000 * (time.perf_counter() - t))
    finally:
        await engine.dispose()
    pg, portable = figures["postgresql"], figures["portable"]
    out: dict[str, Any] = {f"{name}_p50_ms": round(statistics.median(v), 1) for name, v in times.items()}
    out.update({f"portable_{name}_p50_ms": round(statistics.median(v), 1) for name, v in per_query.items()})
    out["window_partner_pairs"] = len(pg)
    out["pairs_differing"] = sum(pg.get(key) != portable.get(key) for key in pg.keys() | portable.keys())
    if wholes:  # offer_figures + the partners query, scores, ranks and the response models
        out["partner_ranking_in_process_p50_ms"] = round(statistics.median(wholes[1:]), 1)
    return out, sent


async def explain(conn: asyncpg.Connection, sent: Sent, title: str) -> str:
    """The plans of both paths' statements (the PostgreSQL one with JIT off, as it runs)."""
    parts = [f"# {title}\n"]
    named = [(f"postgresql: {len(sent['postgresql'])} statements, the second", sent["postgresql"][1], "off"),
             *[(f"portable: {name}", statement, "on")
               for name, statement in zip(PORTABLE_QUERIES, sent["portable"], strict=True)]]
    for name, (statement, params), jit in named:
        await conn.execute(f"SET jit = {jit}")
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *params)
        parts.append(f"## {name}\n\n{statement}\n\nparameters: {params!r}\n\n" + "\n".join(r[0] for r in rows) + "\n")
    await conn.execute("RESET jit")
    return "\n".join(parts)


INDEX_SCANS_SQL = """
SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes
WHERE relname IN ('lead_offers', 'leads') ORDER BY relname, indexrelname
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


async def bench_metrics() -> dict[str, Any]:
    if os.environ.get("BENCH_DATABASE_URL"):
        return {"skipped": "needs a fresh database on 127.0.0.1:5432 (unset BENCH_DATABASE_URL)"}
    from services.lead_router.metrics.periods import month_calendar

    tmp = Path(tempfile.mkdtemp(prefix="lr-bench-metrics-"))
    results: dict[str, Any] = {"offers": OFFERS, "leads": OFFERS, "partners": PARTNERS,
                               "lead_events": "none loaded: no metric reads them",
                               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    t0 = time.monotonic()
    db_url, db_name = await fresh_database()
    assert db_name is not None
    try:
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database=db_name)
        try:
            results.update(await load(conn, OFFERS))
            await conn.execute("SELECT pg_stat_reset()")
            results["http"] = await time_endpoints(db_url, tmp)
            # which indexes the endpoints read (the process has exited: its statistics are flushed)
            results["index_scans_during_http"] = {
                row["indexrelname"]: f"{row['idx_scan']} scans, {row['idx_tup_read']} entries"
                for row in await conn.fetch(INDEX_SCANS_SQL)}
            end = utcnow()
            plans = []
            cases = {"90d": ([(end - timedelta(days=90), end)], 5),
                     "366d": ([(end - timedelta(days=366), end)], 3),
                     "4_months": ([(p.start, p.end) for p in month_calendar("UTC").last(4, end)], 5)}
            for name, (windows, runs) in cases.items():
                figures, sent = await breakdown(db_url, windows, runs, ranking=name == "90d")
                results[f"in_process_{name}"] = figures
                if name != "4_months":
                    plans.append(await explain(conn, sent, f"offer_figures, {name} ({OFFERS:,} offers over 365 "
                                                           f"days, {PARTNERS} partners)"))
            await asyncio.to_thread(_write, PLAN_FILE, "\n\n".join(plans))
            results["plan_file"] = str(PLAN_FILE)
        finally:
            await conn.close()
    finally:
        await drop_database(db_name)
    results["section_s"] = round(time.monotonic() - t0, 1)
    results["logs"] = str(tmp)
    return results
