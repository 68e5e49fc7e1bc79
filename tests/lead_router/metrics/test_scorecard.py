"""`GET /v1/partner/scorecard`: the calling partner's own periods, objectives and its tier's medians, and
nothing of any other partner. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from services.lead_router.metrics.periods import quarter_calendar
from shared.models import Lead, LeadOffer
from tests.fixtures.builders import make_partner, partner_auth

Headers = dict[str, str]
PEERS = {"peer-one-zz": "Peer One Ltd", "peer-two-zz": "Peer Two Ltd", "peer-three-zz": "Peer Three Ltd",
         "silver-zz": "Silver Shop Ltd"}


async def offers(app: FastAPI, partner_id: str, at: datetime, *statuses: tuple[str, str | None]) -> None:
    async with app.state.sessions() as session, session.begin():
        for status, outcome in statuses:
            lead_id = str(uuid.uuid4())
            session.add(Lead(lead_id=lead_id, source="generic", external_id=lead_id, status="offered",
                             company={"name": "X", "country": "US"}, contact={}, created_at=at, updated_at=at))
            await session.flush()
            session.add(LeadOffer(lead_id=lead_id, partner_id=partner_id, offered_at=at, status=status,
                                  outcome=outcome, reason="other" if status == "rejected" else None,
                                  amount=1000.0 if outcome == "won" else None))


async def test_scorecard_shows_only_the_partner_itself(client: httpx.AsyncClient, admin: Headers,
                                                       app: FastAPI) -> None:
    await make_partner(client, admin, "acme", name="Acme", tier="gold", timezone="Europe/Berlin",
                       fiscal_year_start_month=4,
                       objectives=[{"metric": "won", "target": 4, "per": "partner_quarter"},
                                   {"metric": "accepted", "target": 10, "per": "month"}])
    for pid, name in PEERS.items():
        await make_partner(client, admin, pid, name=name, tier="silver" if pid == "silver-zz" else "gold")
    current = quarter_calendar(4, "Europe/Berlin").containing(datetime.now(UTC))
    at = current.start + timedelta(seconds=1)
    await offers(app, "acme", at, ("accepted", "won"), ("rejected", None))
    await offers(app, "peer-one-zz", at, ("accepted", "lost"))
    await offers(app, "peer-two-zz", at, ("rejected", None))
    await offers(app, "peer-three-zz", at, ("accepted", None), ("accepted", None), ("recalled", None))
    await offers(app, "silver-zz", at, ("accepted", "won"))
    auth = await partner_auth(client, admin, "acme")

    response = await client.get("/v1/partner/scorecard", headers=auth)  # default: partner_quarter
    assert response.status_code == 200, response.text
    for pid, name in PEERS.items():
        assert pid not in response.text and name not in response.text
    items = response.json()["items"]
    assert len(items) == 4 and {item["partner_id"] for item in items} == {"acme"}
    this = items[-1]
    assert (this["period"], this["from"]) == (current.label, current.start.isoformat().replace("+00:00", "Z"))
    assert (this["offered"], this["accepted"], this["rejected"], this["won"], this["won_amount"]) == (
        2, 1, 1, 1, 1000.0)
    assert this["objectives"] == [
        {"metric": "won", "per": "partner_quarter", "target": 4.0, "actual": 1.0, "attainment": 0.25}]
    # gold: acme 1/2, peer-one 1/1, peer-two 0/1, peer-three 2/3 accepted -> nearest-rank median 0.5;
    # only two gold partners closed a lead, too few for a median that hides who they are
    assert this["tier_median"] == {"partners": 4, "acceptance_rate": 0.5, "accept_sla_met_rate": None,
                                   "first_touch_sla_met_rate": None, "win_rate": None}
    assert [item["offered"] for item in items[:3]] == [0, 0, 0]

    monthly = (await client.get("/v1/partner/scorecard", params={"period": "month"}, headers=auth)).json()["items"]
    assert all(item["objectives"][0]["metric"] == "accepted" for item in monthly)
    assert {item["partner_id"] for item in monthly} == {"acme"}
    for pid in PEERS:
        assert pid not in str(monthly)

    other = await partner_auth(client, admin, "peer-two-zz")
    theirs = (await client.get("/v1/partner/scorecard", headers=other)).json()["items"]
    assert {item["partner_id"] for item in theirs} == {"peer-two-zz"} and theirs[-1]["objectives"] == []
    assert "acme" not in str(theirs).replace("'partner_id': 'peer-two-zz'", "")
