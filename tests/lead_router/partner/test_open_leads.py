"""A partner's open leads are kept by triggers on `leads` (`partner_open_leads`): after every kind of change,
through the API or straight in SQL, the kept count equals counting the leads, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update

from services.lead_router.lead.states import OPEN_FOR_PARTNER
from shared.models import Lead, PartnerLoad, utcnow
from tests.fixtures.builders import make_partner, partner_auth, post_lead, route_waiting

Headers = dict[str, str]


async def kept_and_counted(app: FastAPI) -> tuple[dict[str, int], dict[str, int]]:
    async with app.state.sessions() as session:
        kept = {pid: n for pid, n in (await session.execute(select(PartnerLoad.partner_id, PartnerLoad.open_leads)))
                .all() if n}
        counted = {pid: int(n) for pid, n in (await session.execute(
            select(Lead.partner_id, func.count()).where(Lead.status.in_(OPEN_FOR_PARTNER), Lead.partner_id.is_not(None))
            .group_by(Lead.partner_id))).all()}
    return kept, counted


async def assert_kept(app: FastAPI) -> None:
    kept, counted = await kept_and_counted(app)
    assert kept == counted


def test_open_means_what_the_triggers_count() -> None:
    """The triggers (migration 8e41d7c09b3a) spell the open statuses out; changing them needs a migration."""
    assert OPEN_FOR_PARTNER == ("offered", "accepted", "working")


async def test_every_partner_step_keeps_the_count(client: httpx.AsyncClient, admin: Headers, app: FastAPI) -> None:
    a, b = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    await make_partner(client, admin, a)
    await make_partner(client, admin, b)
    auth = {a: await partner_auth(client, admin, a), b: await partner_auth(client, admin, b)}
    leads = [(await post_lead(client)).json()["lead_id"] for _ in range(6)]
    await route_waiting(app)
    await assert_kept(app)

    async def holder(lead_id: str) -> str:
        return str((await client.get(f"/v1/leads/{lead_id}", headers=admin)).json()["partner_id"])

    base = "/v1/partner/leads"
    first, second, third, fourth, fifth = leads[:5]
    for lead_id in (first, second, third, fourth):
        response = await client.post(f"{base}/{lead_id}/accept", headers=auth[await holder(lead_id)])
        assert response.status_code == 200, response.text
    await assert_kept(app)  # offered -> accepted: still open, nothing moves
    steps = [(second, {"status": "working"}), (third, {"status": "won"}), (fourth, {"status": "lost"})]
    for lead_id, body in steps:
        response = await client.post(f"{base}/{lead_id}/disposition", json=body, headers=auth[await holder(lead_id)])
        assert response.status_code == 200, response.text
        await assert_kept(app)
    was = await holder(fifth)
    response = await client.post(f"{base}/{fifth}/reject", json={"reason": "no_capacity"}, headers=auth[was])
    assert response.status_code == 200, response.text
    await assert_kept(app)  # back to received, no partner
    await route_waiting(app)
    assert await holder(fifth) not in ("None", was)
    await assert_kept(app)
    partner = (await client.get(f"/v1/partners/{a}", headers=admin)).json()
    kept, _ = await kept_and_counted(app)
    assert partner["open_leads"] == kept.get(a, 0) > 0


async def test_changes_made_in_sql_keep_the_count_too(client: httpx.AsyncClient, admin: Headers,
                                                      app: FastAPI) -> None:
    """A lead inserted open, moved to another partner, closed, reopened and deleted, by hand."""
    p, q = f"p{uuid.uuid4().hex[:6]}", f"q{uuid.uuid4().hex[:6]}"
    await make_partner(client, admin, p)
    await make_partner(client, admin, q)
    lead_id = str(uuid.uuid4())
    now = utcnow()
    changes = [
        lambda s: s.add(Lead(lead_id=lead_id, source="manual", external_id=lead_id, status="offered", partner_id=p,
                             company={}, contact={}, created_at=now, updated_at=now)),
        lambda s: s.execute(update(Lead).where(Lead.lead_id == lead_id).values(partner_id=q)),
        lambda s: s.execute(update(Lead).where(Lead.lead_id == lead_id).values(status="working")),
        lambda s: s.execute(update(Lead).where(Lead.lead_id == lead_id).values(status="won")),
        lambda s: s.execute(update(Lead).where(Lead.lead_id == lead_id).values(status="accepted", partner_id=p)),
        lambda s: s.execute(update(Lead).where(Lead.lead_id == lead_id).values(partner_id=None, status="received")),
        lambda s: s.execute(update(Lead).where(Lead.lead_id == lead_id).values(partner_id=q, status="offered")),
        lambda s: s.execute(delete(Lead).where(Lead.lead_id == lead_id)),
    ]
    expected = [{p: 1}, {q: 1}, {q: 1}, {}, {p: 1}, {}, {q: 1}, {}]
    for change, want in zip(changes, expected, strict=True):
        async with app.state.sessions() as session, session.begin():
            result = change(session)
            if result is not None:
                await result
        kept, counted = await kept_and_counted(app)
        assert {k: v for k, v in kept.items() if k in (p, q)} == want
        assert kept == counted
