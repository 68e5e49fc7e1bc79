"""The `performance` strategy over a real database: records come from the disposition history, decisions
are replayable, and the routing explanation keeps what was weighed. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI

from shared.models import Lead, LeadOffer
from tests.fixtures.builders import lead_body, make_partner, post_lead, route_waiting

Headers = dict[str, str]
RULES = {"rules": [{"name": "perf", "when": {}, "strategy": "performance"}]}


async def history(app: FastAPI, partner_id: str, *, accepted: int, rejected: int, won: int, lost: int,
                  ft_met: int, ft_missed: int) -> None:
    """Offers of the last weeks: `accepted` accepted (the first `won + lost` of them closed, the first
    `ft_met + ft_missed` with a first-touch verdict) and `rejected` rejected."""
    offered = datetime.now(UTC) - timedelta(days=10)
    async with app.state.sessions() as session, session.begin():
        for i in range(accepted + rejected):
            lead_id = str(uuid.uuid4())
            session.add(Lead(lead_id=lead_id, source="generic", external_id=lead_id, status="lost",
                             company={"name": "X", "country": "US"}, contact={}, created_at=offered,
                             updated_at=offered))
            await session.flush()
            fields: dict[str, object] = {"status": "accepted" if i < accepted else "rejected"}
            if i < won + lost:
                fields["outcome"] = "won" if i < won else "lost"
            if i < ft_met + ft_missed:
                fields["first_touch_sla"] = "met" if i < ft_met else "missed"
            session.add(LeadOffer(lead_id=lead_id, partner_id=partner_id, offered_at=offered, **fields))


async def test_performance_routing(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    for pid in ("good", "new", "poor"):
        await make_partner(client, admin, pid, capacity={"max_open_leads": 5000})
    await history(app, "good", accepted=45, rejected=5, won=20, lost=5, ft_met=40, ft_missed=5)
    await history(app, "poor", accepted=10, rejected=40, won=1, lost=9, ft_met=2, ft_missed=8)
    assert (await client.put("/v1/routing/rules", json=RULES, headers=admin)).status_code == 200

    leads = {"leads": [lead_body(external_id=f"sim-{i}") for i in range(600)]}
    first = (await client.post("/v1/routing/simulate", json=leads, headers=admin)).json()["items"]
    again = (await client.post("/v1/routing/simulate", json=leads, headers=admin)).json()["items"]
    assert first == again  # the same inputs, the same decisions
    picks = Counter(item["partner_id"] for item in first)
    assert picks["good"] > picks["new"] > picks["poor"]
    assert picks["good"] >= 480 and picks["new"] >= 10  # the newcomer is tried

    lead_id = (await post_lead(client)).json()["lead_id"]
    assert await route_waiting(app) == 1
    timeline = (await client.get(f"/v1/leads/{lead_id}/timeline", headers=admin)).json()["items"]
    routed = next(item for item in timeline if item["type"] == "lead.routed")["data"]
    assert routed["strategy"] == "performance" and routed["rule"] == "perf"
    weighed = {c["partner_id"]: c["performance"] for c in routed["candidates"]}
    assert weighed["good"]["tallies"] == {"acceptance": [45, 50], "first_touch_sla": [40, 45], "win": [20, 25]}
    assert weighed["poor"]["tallies"] == {"acceptance": [10, 50], "first_touch_sla": [2, 10], "win": [1, 10]}
    assert weighed["new"]["tallies"] == {"acceptance": [0, 0], "first_touch_sla": [0, 0], "win": [0, 0]}
    assert weighed["new"]["priors"] == {"acceptance": 55 / 100, "first_touch_sla": 42 / 55, "win": 21 / 35}
    assert weighed["new"]["weight"] == 0 and 0 < weighed["poor"]["weight"] < weighed["good"]["weight"] < 1
    assert routed["partner_id"] == max(weighed, key=lambda pid: weighed[pid]["draw"])
    # the metrics rank the same records the strategy sampled
    ranked = (await client.get("/v1/metrics/partners", headers=admin)).json()["items"]
    assert {i["partner_id"]: i["score"] for i in ranked} == {pid: w["score"] for pid, w in weighed.items()}
