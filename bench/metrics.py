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
sequential calls per endpoint: p50 and max in ms. Afterwards, in-process, the four statements
`offer_figures` sends are timed one by one for the 90- and the 366-day window and explained
(`EXPLAIN (ANALYZE, BUFFERS)`, written to var/bench-metrics-plan.txt), and alternative formulations of the
same figures (`proposals_90d`, BENCH_METRICS_PROPOSAL_ROUNDS rounds; 0 skips them) are timed against the
current statements on the same connection and checked to give the same figures. Nothing in services/ or in
the schema changes; the indexes a proposal needs are built and dropped in the bench database.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from shared.broker import free_port
from shared.db import create_engine
from shared.models import utcnow
from tests.fixtures.processes import ADMIN_TOKEN, Service, service_env

OFFERS = int(os.environ.get("BENCH_METRICS_OFFERS", "1000000"))
PARTNERS = 500
CALLS = int(os.environ.get("BENCH_METRICS_CALLS", "10"))
ROUNDS = int(os.environ.get("BENCH_METRICS_PROPOSAL_ROUNDS", "5"))  # 0: skip the proposals
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


# --- where the time goes: the queries of `offer_figures`, one by one, in-process ---

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


QUERY_NAMES = ("counts", "rejected_by_reason", "accept_s_percentiles", "first_touch_s_percentiles")


async def breakdown(db_url: str, win: tuple[Any, Any], runs: int, *, ranking: bool
                    ) -> tuple[dict[str, Any], list[tuple[str, Any]], Any]:
    """Time `offer_figures` (each statement) and, with `ranking`, the whole `partner_ranking` for one window,
    in-process; the statements, for EXPLAIN; the figures, to check the proposals against."""
    from services.lead_router.metrics import service
    from services.lead_router.metrics.repository import MetricsRepository
    from shared.config import Settings

    engine = create_engine(db_url)
    captured = Captured(engine)
    settings = Settings(database_url=db_url)
    per_query: dict[str, list[float]] = {name: [] for name in QUERY_NAMES}
    totals: list[float] = []
    wholes: list[float] = []
    figures: Any = None
    try:
        async with AsyncSession(engine) as session:
            for i in range(1 + runs):
                captured.statements.clear()
                t = time.perf_counter()
                figures = await MetricsRepository(session).offer_figures([win])
                total = 1000 * (time.perf_counter() - t)
                sent = list(captured.statements)
                if ranking:
                    t = time.perf_counter()
                    await service.partner_ranking(session, settings, win)
                    wholes.append(1000 * (time.perf_counter() - t))
                if i >= 1:
                    totals.append(total)
                    for name, (_, _, ms) in zip(QUERY_NAMES, sent, strict=True):
                        per_query[name].append(ms)
            statements = [(s, p) for s, p, _ in sent]
    finally:
        await engine.dispose()
    out: dict[str, Any] = {f"{name}_p50_ms": round(statistics.median(v), 1) for name, v in per_query.items()}
    out["offer_figures_p50_ms"] = round(statistics.median(totals), 1)
    if wholes:  # offer_figures + the partners query, scores, ranks and the response models
        out["partner_ranking_in_process_p50_ms"] = round(statistics.median(wholes[1:]), 1)
    return out, statements, figures


async def explain(conn: asyncpg.Connection, statements: list[tuple[str, Any]], title: str) -> str:
    parts = [f"# {title}\n"]
    for name, (statement, params) in zip(QUERY_NAMES, statements, strict=True):
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *params)
        parts.append(f"## {name}\n\n{statement}\n\nparameters: {params!r}\n\n" + "\n".join(r[0] for r in rows) + "\n")
    return "\n".join(parts)


# --- proposals: the same figures, asked differently (scratch SQL; services/ is unchanged) ---

_KNOWN = ", ".join(f"'{r}'" for r in REASONS if r != "other")
_BY_REASON = ", ".join(f"count(*) FILTER (WHERE status = 'rejected' AND reason = '{r}') AS \"r:{r}\""
                       for r in REASONS if r != "other")
# Counts and rejections by reason in one pass (reasons are a closed set: RejectIn.reason is a Literal).
FILTER_COUNTS = f"""
    count(*) AS offered,
    count(*) FILTER (WHERE status = 'accepted') AS accepted,
    count(*) FILTER (WHERE status = 'rejected') AS rejected,
    count(*) FILTER (WHERE status = 'recalled') AS recalled,
    count(*) FILTER (WHERE status = 'offered') AS pending,
    count(first_touch_at) AS touched,
    count(*) FILTER (WHERE accept_sla IS NOT NULL OR status = 'recalled') AS accept_sla_ended,
    count(*) FILTER (WHERE accept_sla = 'met' AND status <> 'recalled') AS accept_sla_met,
    count(first_touch_sla) AS first_touch_sla_ended,
    count(*) FILTER (WHERE first_touch_sla = 'met') AS first_touch_sla_met,
    count(*) FILTER (WHERE outcome = 'won') AS won,
    count(*) FILTER (WHERE outcome = 'lost') AS lost,
    count(*) FILTER (WHERE outcome = 'no_decision') AS no_decision,
    coalesce(sum(amount) FILTER (WHERE outcome = 'won'), 0) AS won_amount,
    {_BY_REASON},
    count(*) FILTER (WHERE status = 'rejected' AND (reason IS NULL OR reason NOT IN ({_KNOWN}))) AS "r:other"
"""
# Nearest rank as PostgreSQL's percentile_disc computes it: the value at position ceil(p·n), NULLs ignored
# (the same rank as `rn·100 ≥ p·n` for every n up to 2,000,000 in IEEE doubles, checked in Python).
PERCENTILES = """
    percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY accept_s) AS accept_pcts,
    percentile_disc(0.5) WITHIN GROUP (ORDER BY first_touch_s) AS median_time_to_first_touch_s
"""
IN_WINDOW = "offered_at >= $1 AND offered_at < $2"
ONE_QUERY = f"SELECT partner_id, {FILTER_COUNTS}, {PERCENTILES} FROM lead_offers WHERE {IN_WINDOW} GROUP BY partner_id"
COUNTS_ONLY = f"SELECT partner_id, {FILTER_COUNTS} FROM lead_offers WHERE {IN_WINDOW} GROUP BY partner_id"
# Per partner (a LATERAL subquery): each partner's offers of the window are one range of an index on
# (partner_id, offered_at), already in partner order, so nothing sorts 250k rows by partner: only each
# partner's few hundred values are sorted for its percentiles.
PER_PARTNER_PERCENTILES = f"""
SELECT p.partner_id, x.* FROM partners p CROSS JOIN LATERAL (
    SELECT {PERCENTILES} FROM lead_offers o WHERE o.partner_id = p.partner_id AND {IN_WINDOW}) AS x"""
PER_PARTNER_ALL = f"""
SELECT p.partner_id, x.* FROM partners p CROSS JOIN LATERAL (
    SELECT {FILTER_COUNTS}, {PERCENTILES} FROM lead_offers o WHERE o.partner_id = p.partner_id AND {IN_WINDOW}) AS x"""
METRIC_COLUMNS = ("status, reason, first_touch_at, accept_sla, first_touch_sla, outcome, amount, accept_s, "
                  "first_touch_s")
INDEXES = {
    "ix_bench_offered_covering": f"(offered_at) INCLUDE (partner_id, {METRIC_COLUMNS})",
    "ix_bench_partner_offered_pcts": "(partner_id, offered_at) INCLUDE (accept_s, first_touch_s)",
    "ix_bench_partner_offered_covering": f"(partner_id, offered_at) INCLUDE ({METRIC_COLUMNS})",
}
COUNTS, REASONS_Q, ACCEPT_PCTS, FIRST_TOUCH_PCTS = range(4)  # the statements offer_figures sends, in order
NO_JIT = "SET jit = off"  # LATERAL plans cost more than jit_above_cost at 365 days; JIT only adds time here


@dataclass(frozen=True)
class Variant:
    name: str
    statements: tuple[int | str, ...]  # an int: that statement of offer_figures, as sent; a str: scratch SQL
    index: str | None = None
    setting: str = ""
    wide: bool = False  # also timed over the 366-day window


VARIANTS = [
    Variant("current (4 statements)", (COUNTS, REASONS_Q, ACCEPT_PCTS, FIRST_TOUCH_PCTS)),
    Variant("current, work_mem 64MB", (COUNTS, REASONS_Q, ACCEPT_PCTS, FIRST_TOUCH_PCTS),
            setting="SET work_mem = '64MB'"),
    Variant("one GROUP BY: FILTER counts + reasons + percentile_disc", (ONE_QUERY,)),
    Variant("current + index (offered_at) INCLUDE (partner_id, metric columns)",
            (COUNTS, REASONS_Q, ACCEPT_PCTS, FIRST_TOUCH_PCTS), index="ix_bench_offered_covering"),
    Variant("current counts + reasons; percentiles per partner (LATERAL) + index (partner_id, offered_at) "
            "INCLUDE (accept_s, first_touch_s)", (COUNTS, REASONS_Q, PER_PARTNER_PERCENTILES),
            index="ix_bench_partner_offered_pcts", setting=NO_JIT),
    Variant("FILTER counts + reasons in one GROUP BY; percentiles per partner (LATERAL), same index",
            (COUNTS_ONLY, PER_PARTNER_PERCENTILES), index="ix_bench_partner_offered_pcts", setting=NO_JIT),
    Variant("everything per partner (LATERAL, one statement) + index (partner_id, offered_at) "
            "INCLUDE (metric columns)", (PER_PARTNER_ALL,), index="ix_bench_partner_offered_covering",
            setting=NO_JIT, wide=True),
]
_COUNT_NAMES = ("offered", "accepted", "rejected", "recalled", "pending", "touched", "accept_sla_ended",
                "accept_sla_met", "first_touch_sla_ended", "first_touch_sla_met", "won", "lost", "no_decision")
EMPTY: dict[str, Any] = {"counts": dict.fromkeys(_COUNT_NAMES, 0), "won_amount": 0.0, "rejected_by_reason": {},
                         "pcts": (None, None, None)}


def _figures_of(rows: list[asyncpg.Record]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Rows of the scratch queries, per partner, shaped like `_normal`'s; and which figures they hold."""
    out: dict[str, dict[str, Any]] = {}
    kinds: set[str] = set()
    for row in rows:
        data = dict(row)
        entry = out.setdefault(data["partner_id"], {})
        if "offered" in data:
            kinds |= {"counts", "won_amount", "rejected_by_reason"}
            entry["counts"] = {name: int(data[name]) for name in _COUNT_NAMES}
            entry["won_amount"] = round(float(data["won_amount"]), 2)
            entry["rejected_by_reason"] = {k[2:]: int(v) for k, v in data.items() if k.startswith("r:") and v}
        if "accept_pcts" in data:
            kinds.add("pcts")
            pcts = data["accept_pcts"] or [None, None]
            entry["pcts"] = (pcts[0], pcts[1], data["median_time_to_first_touch_s"])
    return out, kinds


def _normal(figures: Any) -> dict[str, dict[str, Any]]:
    return {pid: {"counts": f.counts, "won_amount": f.won_amount, "rejected_by_reason": f.rejected_by_reason,
                  "pcts": (f.median_time_to_accept_s, f.p90_time_to_accept_s, f.median_time_to_first_touch_s)}
            for (_, pid), f in figures.items()}


def _differences(expected: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]], kinds: set[str]) -> int:
    """Partners for which the figures a variant computes itself differ from offer_figures' (a partner
    without offers counts as all zeros and no percentiles)."""
    bad = 0
    for pid in expected.keys() | got.keys():
        a, b = {**EMPTY, **expected.get(pid, {})}, {**EMPTY, **got.get(pid, {})}
        same = all(a[k] == b[k] for k in kinds - {"pcts"})
        if "pcts" in kinds:
            same = same and all((x is None and y is None) or (x is not None and y is not None and abs(x - y) < 1e-6)
                                for x, y in zip(a["pcts"], b["pcts"], strict=True))
        bad += not same
    return bad


async def _run(conn: asyncpg.Connection, variant: Variant, statements: list[tuple[str, Any]],
               win: tuple[Any, Any]) -> tuple[float, list[asyncpg.Record]]:
    """One run of a variant: ms for all its statements; the rows of its scratch statements."""
    if variant.setting:
        await conn.execute(variant.setting)
    rows: list[asyncpg.Record] = []
    t = time.perf_counter()
    for item in variant.statements:
        if isinstance(item, int):
            await conn.fetch(statements[item][0], *statements[item][1])
        else:
            rows += await conn.fetch(item, *win)
    elapsed = 1000 * (time.perf_counter() - t)
    if variant.setting:
        await conn.execute("RESET ALL")
    return elapsed, rows


async def proposals(conn: asyncpg.Connection, statements: list[tuple[str, Any]], win: tuple[Any, Any],
                    wide: tuple[Any, Any], expected: Any, rounds: int) -> tuple[dict[str, Any], str]:
    """Each variant `rounds` times after one warm-up, round-robin among the variants of one index setup
    (the shared machine's noise hits them alike): p50 ms of all its statements, and how many partners'
    figures differ from offer_figures'. Each index is built, used, and dropped. Also the plan of the
    one-statement proposal."""
    reference = _normal(expected)
    results: dict[str, Any] = {}
    plan = ""
    for index in (None, *INDEXES):
        chosen = [v for v in VARIANTS if v.index == index]
        if index is not None:
            t = time.monotonic()
            await conn.execute(f"CREATE INDEX {index} ON lead_offers {INDEXES[index]}")
            await conn.execute("ANALYZE lead_offers")
            size = await conn.fetchval("SELECT pg_size_pretty(pg_relation_size($1::regclass))", index)
            results[f"build index {index}"] = {"build_s": round(time.monotonic() - t, 1), "size": size}
        try:
            times: dict[str, list[float]] = {v.name: [] for v in chosen}
            for i in range(rounds + 1):
                for variant in chosen:
                    elapsed, rows = await _run(conn, variant, statements, win)
                    if i == 0:
                        got, kinds = _figures_of(rows)
                        results[variant.name] = {"partners_differing": _differences(reference, got, kinds)} \
                            if kinds else {}
                    else:
                        times[variant.name].append(elapsed)
            for variant in chosen:
                results[variant.name]["p50_ms"] = round(statistics.median(times[variant.name]), 1)
                if variant.wide:
                    await _run(conn, variant, statements, wide)
                    runs = [(await _run(conn, variant, statements, wide))[0] for _ in range(3)]
                    results[variant.name]["366d_p50_ms"] = round(statistics.median(runs), 1)
                    await conn.execute(variant.setting or "RESET ALL")
                    for statement in (item for item in variant.statements if isinstance(item, str)):
                        rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *win)
                        plan += f"## {variant.name}\n\n{statement}\n\n" + "\n".join(r[0] for r in rows) + "\n"
                    await conn.execute("RESET ALL")
        finally:
            if index is not None:
                await conn.execute(f"DROP INDEX {index}")
    return results, f"# Proposal, the last 90 days\n\n{plan}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


async def bench_metrics() -> dict[str, Any]:
    if os.environ.get("BENCH_DATABASE_URL"):
        return {"skipped": "needs a fresh database on 127.0.0.1:5432 (unset BENCH_DATABASE_URL)"}
    from bench.__main__ import drop_database, fresh_database  # here: bench.__main__ imports this module

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
            results["http"] = await time_endpoints(db_url, tmp)
            end = utcnow()
            plans = []
            wide = (end - timedelta(days=366), end)
            for days, win, runs in ((90, (end - timedelta(days=90), end), 5), (366, wide, 3)):
                figures, statements, expected = await breakdown(db_url, win, runs, ranking=days == 90)
                results[f"in_process_{days}d"] = figures
                plans.append(await explain(conn, statements, f"offer_figures, the last {days} days ({OFFERS:,} "
                                                             f"offers over 365 days, {PARTNERS} partners)"))
                if days == 90 and ROUNDS > 0:
                    results["proposals_90d"], plan = await proposals(conn, statements, win, wide, expected, ROUNDS)
                    plans.append(plan)
            await asyncio.to_thread(_write, PLAN_FILE, "\n\n".join(plans))
            results["plan_file"] = str(PLAN_FILE)
        finally:
            await conn.close()
    finally:
        await drop_database(db_name)
    results["section_s"] = round(time.monotonic() - t0, 1)
    results["logs"] = str(tmp)
    return results
