"""Metrics over a known disposition history, every figure asserted exactly, on SQLite and PostgreSQL.

The history is written as rows (leads and offers with the times and figures the write path keeps), so it
can sit across month, quarter and MOP boundaries: offer A3 at 2026-10-01T03:00Z is October in UTC but
still September (fiscal Q1, Jul-Sep) in Los Angeles, and offer A8 at 2027-01-01T05:00Z is January in UTC
but New Year's Eve in Los Angeles, inside the partner's Q2 and its MOP that began in July.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.config import Settings
from shared.models import Lead, LeadOffer
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.builders import assert_problem, make_partner, partner_auth

Headers = dict[str, str]
_ids = itertools.count(1)


@pytest.fixture
def settings(db_url: str) -> Settings:
    """The vendor's fiscal year starts in February (quarters Feb-Apr, May-Jul, Aug-Oct, Nov-Jan), in UTC."""
    return Settings(database_url=db_url, admin_token=ADMIN_TOKEN, run_relay=False, run_router=False,
                    route_on_intake=False,
                    kafka_bootstrap="127.0.0.1:1", topic_prefix="test", fiscal_year_start_month=2,
                    vendor_timezone="UTC", performance_refresh_s=0)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


async def add(app: FastAPI, *, lead_status: str, source: str = "hubspot", campaign: str | None = "webinar",
              created: str, offers: list[dict[str, Any]] = ()) -> str:  # type: ignore[assignment]
    """One lead received at `created`, with its offers (each: partner, offered, status, and kept figures)."""
    lead_id = str(uuid.uuid4())
    async with app.state.sessions() as session, session.begin():
        session.add(Lead(lead_id=lead_id, source=source, external_id=f"m-{next(_ids)}", status=lead_status,
                         campaign=campaign, company={"name": "X", "country": "US"}, contact={},
                         created_at=at(created), updated_at=at(created)))
        await session.flush()
        for offer in offers:
            fields = dict(offer)
            offered = at(fields.pop("offered"))
            session.add(LeadOffer(lead_id=lead_id, offered_at=offered, **fields))
    return lead_id


def offer(partner_id: str, offered: str, status: str, **figures: Any) -> dict[str, Any]:
    return {"partner_id": partner_id, "offered": offered, "status": status, **figures}


async def history(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await make_partner(client, admin, "acme", name="Acme", tier="gold", timezone="America/Los_Angeles",
                       fiscal_year_start_month=7, operating_periods={"start_months": [7, 1]},
                       objectives=[{"metric": "won_amount", "target": 100000, "per": "partner_quarter"},
                                   {"metric": "accepted", "target": 2, "per": "mop"}])
    await make_partner(client, admin, "bolt", name="Bolt", tier="gold", timezone="UTC")
    await make_partner(client, admin, "cora", name="Cora", tier="silver", timezone="UTC")
    touched = {"first_touch_at": at("2026-01-01T00:00:00Z")}  # only its presence is read
    # outside every window below
    await add(app, lead_status="won", created="2026-08-15T00:00:00Z", offers=[
        offer("acme", "2026-08-20T16:00:00Z", "accepted", accept_s=5.0, accept_sla="met", outcome="won", amount=7.0)])
    # acme: A1..A9
    await add(app, lead_status="won", created="2026-09-10T15:59:00Z", offers=[offer(
        "acme", "2026-09-10T16:00:00Z", "accepted", accept_s=600.0, first_touch_s=3600.0, accept_sla="met",
        first_touch_sla="met", outcome="won", amount=50000.0, **touched)])
    await add(app, lead_status="lost", created="2026-09-20T15:59:00Z", offers=[offer(
        "acme", "2026-09-20T16:00:00Z", "accepted", accept_s=1200.0, first_touch_s=7200.0, accept_sla="missed",
        first_touch_sla="missed", outcome="lost", **touched)])
    await add(app, lead_status="unroutable", created="2026-10-01T02:59:00Z", offers=[offer(
        "acme", "2026-10-01T03:00:00Z", "rejected", reason="not_qualified", accept_sla="met")])
    await add(app, lead_status="received", source="form", campaign="spring", created="2026-10-15T15:59:00Z",
              offers=[offer("acme", "2026-10-15T16:00:00Z", "rejected", reason="not_qualified", accept_sla="missed")])
    await add(app, lead_status="received", source="form", campaign="spring", created="2026-11-02T15:59:00Z",
              offers=[offer("acme", "2026-11-02T16:00:00Z", "recalled", reason="accept_overdue", accept_sla="missed")])
    await add(app, lead_status="accepted", created="2026-11-20T15:59:00Z", offers=[offer(
        "acme", "2026-11-20T16:00:00Z", "accepted", accept_s=300.0, accept_sla="met")])
    await add(app, lead_status="offered", source="form", campaign="spring", created="2026-12-01T15:59:00Z",
              offers=[offer("acme", "2026-12-01T16:00:00Z", "offered")])
    await add(app, lead_status="no_decision", source="form", campaign=None, created="2027-01-01T04:59:00Z",
              offers=[offer("acme", "2027-01-01T05:00:00Z", "accepted", accept_s=60.0, first_touch_s=0.0,
                            accept_sla="met", first_touch_sla="met", outcome="no_decision", **touched)])
    await add(app, lead_status="won", source="form", campaign=None, created="2027-01-05T15:59:00Z", offers=[offer(
        "acme", "2027-01-05T16:00:00Z", "accepted", accept_s=900.0, first_touch_s=100.0, accept_sla="met",
        first_touch_sla="met", outcome="won", amount=25000.0, **touched)])
    # bolt
    await add(app, lead_status="won", created="2026-10-10T09:59:00Z", offers=[offer(
        "bolt", "2026-10-10T10:00:00Z", "accepted", accept_s=100.0, first_touch_s=200.0, accept_sla="met",
        first_touch_sla="met", outcome="won", amount=10000.0, **touched)])
    await add(app, lead_status="received", created="2026-10-11T09:59:00Z", offers=[offer(
        "bolt", "2026-10-11T10:00:00Z", "rejected", reason="other", accept_sla="met")])
    # leads nobody was offered
    await add(app, lead_status="nurturing", created="2026-10-20T00:00:00Z")
    await add(app, lead_status="unroutable", source="form", campaign="spring", created="2026-10-21T00:00:00Z")


WINDOW = {"from": "2026-09-01T00:00:00Z", "to": "2027-02-01T00:00:00Z"}
ZERO = dict(offered=0, accepted=0, rejected=0, recalled=0, pending=0, touched=0, rejected_by_reason={},
            acceptance_rate=None, median_time_to_accept_s=None, p90_time_to_accept_s=None,
            median_time_to_first_touch_s=None, accept_sla_met_rate=None, first_touch_sla_met_rate=None,
            won=0, lost=0, no_decision=0, win_rate=None, won_amount=0.0)


def shrunk(successes: int, trials: int, prior: Fraction, k: int = 10) -> Fraction:
    return (successes + k * prior) / (trials + k)


def score(parts: dict[str, Fraction]) -> float:
    return float(Fraction(3, 10) * parts["acceptance"] + Fraction(3, 10) * parts["first_touch_sla"]
                 + Fraction(4, 10) * parts["win"])


def figures(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ZERO}


async def test_partner_ranking(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await history(client, admin, app)
    body = (await client.get("/v1/metrics/partners", params=WINDOW, headers=admin)).json()
    items = {item["partner_id"]: item for item in body["items"]}
    assert figures(items["acme"]) == dict(
        offered=9, accepted=5, rejected=2, recalled=1, pending=1, touched=4, rejected_by_reason={"not_qualified": 2},
        acceptance_rate=5 / 8, median_time_to_accept_s=600.0, p90_time_to_accept_s=1200.0,
        median_time_to_first_touch_s=100.0, accept_sla_met_rate=5 / 8, first_touch_sla_met_rate=3 / 4,
        won=2, lost=1, no_decision=1, win_rate=0.5, won_amount=75000.0)
    assert figures(items["bolt"]) == dict(
        offered=2, accepted=1, rejected=1, recalled=0, pending=0, touched=1, rejected_by_reason={"other": 1},
        acceptance_rate=0.5, median_time_to_accept_s=100.0, p90_time_to_accept_s=100.0,
        median_time_to_first_touch_s=200.0, accept_sla_met_rate=1.0, first_touch_sla_met_rate=1.0,
        won=1, lost=0, no_decision=0, win_rate=1.0, won_amount=10000.0)
    assert figures(items["cora"]) == ZERO
    # gold pools acme and bolt; silver has no trials, so it takes everyone's pooled rates
    m = {"acceptance": Fraction(6, 10), "first_touch_sla": Fraction(4, 5), "win": Fraction(3, 5)}
    acme = {"acceptance": shrunk(5, 8, m["acceptance"]), "first_touch_sla": shrunk(3, 4, m["first_touch_sla"]),
            "win": shrunk(2, 4, m["win"])}
    bolt = {"acceptance": shrunk(1, 2, m["acceptance"]), "first_touch_sla": shrunk(1, 1, m["first_touch_sla"]),
            "win": shrunk(1, 1, m["win"])}
    for pid, parts in (("acme", acme), ("bolt", bolt), ("cora", m)):
        assert items[pid]["score_parts"] == pytest.approx({k: float(v) for k, v in parts.items()}, abs=1e-12)
        assert items[pid]["score"] == pytest.approx(score(parts), abs=1e-12)
    # bolt 0.675 > cora 0.66 (no record: its tier's prior) > acme 0.6476 (a long, mixed record)
    assert [(i["partner_id"], i["rank"], i["tier"]) for i in body["items"]] == [
        ("bolt", 1, "gold"), ("cora", 2, "silver"), ("acme", 3, "gold")]
    assert body["next_cursor"] is None
    page = (await client.get("/v1/metrics/partners", params={**WINDOW, "limit": 2}, headers=admin)).json()
    assert [i["partner_id"] for i in page["items"]] == ["bolt", "cora"]
    rest = (await client.get("/v1/metrics/partners", params={**WINDOW, "limit": 2, "cursor": page["next_cursor"]},
                             headers=admin)).json()
    assert [i["partner_id"] for i in rest["items"]] == ["acme"] and rest["next_cursor"] is None


async def periods(client: httpx.AsyncClient, admin: Headers, period: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/metrics/partners/acme", params={**WINDOW, "period": period}, headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_periods(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await history(client, admin, app)

    months = await periods(client, admin, "month")  # the vendor's calendar: UTC
    assert [(p["period"], p["from"], p["to"]) for p in months] == [
        ("2026-09", "2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z"),
        ("2026-10", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("2026-11", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
        ("2026-12", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ("2027-01", "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")]
    assert [(p["offered"], p["accepted"], p["rejected"], p["recalled"], p["pending"]) for p in months] == [
        (2, 2, 0, 0, 0), (2, 0, 2, 0, 0), (2, 1, 0, 1, 0), (1, 0, 0, 0, 1), (2, 2, 0, 0, 0)]
    assert [p["objectives"] for p in months] == [[]] * 5  # acme has no monthly objective
    assert months[0]["median_time_to_accept_s"] == 600.0 and months[0]["p90_time_to_accept_s"] == 1200.0
    assert months[4]["won_amount"] == 25000.0 and months[4]["win_rate"] == 0.5

    quarters = await periods(client, admin, "partner_quarter")  # fiscal year from July, Los Angeles
    assert [(p["period"], p["from"], p["to"]) for p in quarters] == [
        ("FY2027-Q1", "2026-09-01T00:00:00Z", "2026-10-01T07:00:00Z"),
        ("FY2027-Q2", "2026-10-01T07:00:00Z", "2027-01-01T08:00:00Z"),
        ("FY2027-Q3", "2027-01-01T08:00:00Z", "2027-02-01T00:00:00Z")]
    assert [(p["offered"], p["accepted"], p["rejected"], p["recalled"], p["pending"], p["won"], p["no_decision"])
            for p in quarters] == [(3, 2, 1, 0, 0, 1, 0), (5, 2, 1, 1, 1, 0, 1), (1, 1, 0, 0, 0, 1, 0)]
    assert [p["objectives"] for p in quarters] == [
        [{"metric": "won_amount", "per": "partner_quarter", "target": 100000.0, "actual": 50000.0,
          "attainment": 0.5}],
        [{"metric": "won_amount", "per": "partner_quarter", "target": 100000.0, "actual": 0.0, "attainment": 0.0}],
        [{"metric": "won_amount", "per": "partner_quarter", "target": 100000.0, "actual": 25000.0,
          "attainment": 0.25}]]

    vendor = await periods(client, admin, "vendor_quarter")  # fiscal year from February, UTC
    assert [(p["period"], p["from"], p["to"], p["offered"]) for p in vendor] == [
        ("FY2027-Q3", "2026-09-01T00:00:00Z", "2026-11-01T00:00:00Z", 4),
        ("FY2027-Q4", "2026-11-01T00:00:00Z", "2027-02-01T00:00:00Z", 5)]

    mops = await periods(client, admin, "mop")  # agreed months January and July, Los Angeles
    assert [(p["period"], p["from"], p["to"], p["offered"], p["accepted"]) for p in mops] == [
        ("MOP-2026-07", "2026-09-01T00:00:00Z", "2027-01-01T08:00:00Z", 8, 4),
        ("MOP-2027-01", "2027-01-01T08:00:00Z", "2027-02-01T00:00:00Z", 1, 1)]
    assert [p["objectives"] for p in mops] == [
        [{"metric": "accepted", "per": "mop", "target": 2.0, "actual": 4.0, "attainment": 2.0}],
        [{"metric": "accepted", "per": "mop", "target": 2.0, "actual": 1.0, "attainment": 0.5}]]
    # every period item is also ranked among all partners over that period
    assert all(p["partner_id"] == "acme" and p["tier"] == "gold" and 1 <= p["rank"] <= 3 for p in mops)


async def test_default_periods_are_the_last_four(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await make_partner(client, admin, "acme", timezone="Asia/Tokyo", fiscal_year_start_month=4)
    items = (await client.get("/v1/metrics/partners/acme", params={"period": "partner_quarter"},
                              headers=admin)).json()["items"]
    assert len(items) == 4
    starts = [datetime.fromisoformat(p["from"]) for p in items]
    assert starts == sorted(starts) and all(a["to"] == b["from"] for a, b in zip(items, items[1:], strict=False))
    now = datetime.now(UTC)
    assert starts[-1] <= now < datetime.fromisoformat(items[-1]["to"])
    assert all(datetime.fromisoformat(p["from"]).astimezone(UTC).hour == 15 for p in items)  # Tokyo midnight


async def test_sources(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    await history(client, admin, app)
    body = (await client.get("/v1/metrics/sources", params=WINDOW, headers=admin)).json()
    assert body["items"] == [
        {"source": "hubspot", "campaign": "webinar", "leads": 7, "nurturing": 1, "routed": 6, "unroutable": 1,
         "accepted": 4, "rejected": 2, "reject_rate": 2 / 6, "rejected_by_reason": {"not_qualified": 1, "other": 1},
         "won": 2, "lost": 1, "no_decision": 0, "win_rate": 2 / 3},
        {"source": "form", "campaign": "spring", "leads": 4, "nurturing": 0, "routed": 3, "unroutable": 1,
         "accepted": 0, "rejected": 1, "reject_rate": 1.0, "rejected_by_reason": {"not_qualified": 1},
         "won": 0, "lost": 0, "no_decision": 0, "win_rate": None},
        {"source": "form", "campaign": None, "leads": 2, "nurturing": 0, "routed": 2, "unroutable": 0,
         "accepted": 2, "rejected": 0, "reject_rate": 0.0, "rejected_by_reason": {},
         "won": 1, "lost": 0, "no_decision": 1, "win_rate": 0.5}]
    assert body["next_cursor"] is None


async def test_write_path_keeps_the_figures(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    """Through the partner API: accept, a late-reported earlier touch, a win; then the monitor's verdicts."""
    from services.lead_router.metrics.handlers import handle_clock_ended
    from shared.events import new_event
    from tests.fixtures.builders import post_lead, route_waiting

    await make_partner(client, admin, "acme")
    auth = await partner_auth(client, admin, "acme")
    lead_id = (await post_lead(client)).json()["lead_id"]
    assert await route_waiting(app) == 1
    base = f"/v1/partner/leads/{lead_id}"
    assert (await client.post(f"{base}/accept", headers=auth)).status_code == 200
    now = datetime.now(UTC)
    for minutes in (1, 2):  # the second report is of an earlier touch: it is the first touch
        occurred = (now - timedelta(seconds=30 * minutes)).isoformat()
        response = await client.post(f"{base}/activities", headers=auth,
                                     json={"type": "follow_up", "channel": "call", "occurred_at": occurred})
        assert response.status_code == 201, response.text
    response = await client.post(f"{base}/disposition", headers=auth, json={"status": "won", "amount": 1234.5})
    assert response.status_code == 200
    async with app.state.sessions() as session, session.begin():
        for kind, verdict in (("accept", "met"), ("first_touch", "missed")):
            event = new_event("sla.clock_ended", source="/sla-monitor", subject=lead_id,
                              data={"lead_id": lead_id, "partner_id": "acme", "kind": kind, "verdict": verdict})
            await handle_clock_ended(session, event)
            await handle_clock_ended(session, event)  # redelivered: the same
    async with app.state.sessions() as session:
        from sqlalchemy import select
        row = (await session.scalars(select(LeadOffer).where(LeadOffer.lead_id == lead_id))).one()
    assert row.accept_s is not None and 0 <= row.accept_s < 60
    assert row.first_touch_at is not None and row.first_touch_s == max(
        0.0, (row.first_touch_at - row.offered_at).total_seconds())
    assert row.first_touch_at < now - timedelta(seconds=50)
    assert (row.outcome, row.amount, row.accept_sla, row.first_touch_sla) == ("won", 1234.5, "met", "missed")
    item = (await client.get("/v1/metrics/partners", headers=admin)).json()["items"][0]
    assert (item["offered"], item["accepted"], item["touched"], item["won"], item["won_amount"]) == (
        1, 1, 1, 1, 1234.5)
    assert (item["accept_sla_met_rate"], item["first_touch_sla_met_rate"]) == (1.0, 0.0)


@pytest.mark.parametrize(("path", "params", "status"), [
    ("/v1/metrics/partners", {"from": "2026-10-01", "to": "2026-09-01"}, 422),
    ("/v1/metrics/partners", {"from": "2026-10-01T00:00:00Z", "to": "2026-10-01T00:00:00Z"}, 422),
    ("/v1/metrics/partners", {"from": "yesterday"}, 422),
    ("/v1/metrics/partners", {"from": "2026-10-01T00:00:00"}, 422),  # no offset
    ("/v1/metrics/partners", {"to": "2026-13-01"}, 422),
    ("/v1/metrics/partners", {"cursor": "bogus"}, 422),
    ("/v1/metrics/sources", {"from": "2026-10-01", "to": "2026-09-01"}, 422),
    ("/v1/metrics/sources", {"to": "\x00"}, 422),
    ("/v1/metrics/partners/acme", {"period": "fortnight"}, 422),
    ("/v1/metrics/partners/acme", {"period": "month", "from": "2026-10-01", "to": "2026-09-01"}, 422),
    ("/v1/metrics/partners/acme", {"period": "month", "from": "2000-01-01", "to": "2026-01-01"}, 422),  # >120
    ("/v1/metrics/partners/nobody", {"period": "month"}, 404),
])
async def test_bad_input(client: httpx.AsyncClient, admin: Headers, path: str, params: dict[str, str],
                         status: int) -> None:
    await make_partner(client, admin, "acme")
    assert_problem(await client.get(path, params=params, headers=admin), status)


async def test_credentials(client: httpx.AsyncClient, admin: Headers) -> None:
    await make_partner(client, admin, "acme")
    auth = await partner_auth(client, admin, "acme")
    for path in ("/v1/metrics/partners", "/v1/metrics/sources", "/v1/metrics/partners/acme"):
        assert_problem(await client.get(path), 401)
        assert_problem(await client.get(path, headers=auth), 401)  # a partner key is not an admin token
    assert_problem(await client.get("/v1/partner/scorecard"), 401)
    assert_problem(await client.get("/v1/partner/scorecard", headers=admin), 401)
    assert_problem(await client.get("/v1/partner/scorecard", params={"period": "year"}, headers=auth), 422)


async def test_partner_objectives_validation(client: httpx.AsyncClient, admin: Headers) -> None:
    from tests.fixtures.builders import partner_body
    for bad in ({"operating_periods": {"start_months": []}}, {"operating_periods": {"start_months": [0]}},
                {"operating_periods": {"start_months": [1, 1]}}, {"operating_periods": {"start_months": [13]}},
                {"objectives": [{"metric": "revenue", "target": 1, "per": "mop"}]},
                {"objectives": [{"metric": "won", "target": 0, "per": "mop"}]},
                {"objectives": [{"metric": "won", "target": 5, "per": "week"}]}):
        assert_problem(await client.put("/v1/partners/acme", json=partner_body(**bad), headers=admin), 422)
    body = partner_body(operating_periods={"start_months": [10, 4]},
                        objectives=[{"metric": "won", "target": 5, "per": "mop"}])
    created = (await client.put("/v1/partners/acme", json=body, headers=admin)).json()
    assert created["operating_periods"] == {"start_months": [4, 10]}
    assert created["objectives"] == [{"metric": "won", "target": 5.0, "per": "mop"}]
