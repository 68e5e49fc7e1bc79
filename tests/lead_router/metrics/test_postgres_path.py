"""The PostgreSQL path of `offer_figures` (one LATERAL statement, FILTER counts, percentile_disc) gives exactly
the figures of the portable path (four statements, SUM(CASE), window-function nearest ranks), over a
randomized history: ties and NULLs in the seconds, reasons NULL and 'other', single-value groups, offers on
window boundaries and outside every window, an offer of a partner missing from `partners`. PostgreSQL only."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.lead_router.lead.states import REJECT_REASONS
from services.lead_router.metrics.repository import MetricsRepository, OfferFigures, Window
from shared.config import Settings
from shared.models import Lead, LeadOffer, Partner
from tests.conftest import ADMIN_TOKEN

T0 = datetime(2026, 3, 1, tzinfo=UTC)
MONTHS: list[Window] = [(T0 + timedelta(days=30 * k), T0 + timedelta(days=30 * (k + 1))) for k in range(4)]
PARTNERS = ("p-a", "p-b", "p-c", "p-d", "p-e", "p-solo", "p-idle")  # p-solo: one offer; p-idle: none in windows
GHOST = "p-ghost"  # offers, but no row in `partners`
SECONDS = (0.0, 30.0, 60.0, 60.0, 60.0, 120.5, 300.0, 300.0, 900.0, 3600.0, 86400.0)  # ties, and a zero


@pytest.fixture
def settings(pg_url: str) -> Settings:
    return Settings(database_url=pg_url, admin_token=ADMIN_TOKEN, run_relay=False, run_router=False,
                    kafka_bootstrap="127.0.0.1:1", topic_prefix="test", performance_refresh_s=0)


def _offer(rng: random.Random, partner_id: str, offered_at: datetime) -> dict[str, Any]:
    status = rng.choices(("accepted", "rejected", "recalled", "offered"), (5, 3, 1, 1))[0]
    outcome = rng.choice((None, None, "won", "lost", "no_decision")) if status == "accepted" else None
    reason = None
    if status == "rejected":
        reason = rng.choice((*REJECT_REASONS, None, None, "other"))
    elif status == "recalled":
        reason = "accept_overdue"  # a recall's reason: not a rejection, never counted as one
    touched = status == "accepted" and rng.random() < 0.7
    return dict(
        partner_id=partner_id, offered_at=offered_at, status=status, reason=reason,
        first_touch_at=offered_at + timedelta(hours=1) if touched else None,
        # mostly on accepted offers, as the write path keeps them; sometimes elsewhere, sometimes missing
        accept_s=rng.choice(SECONDS) if (status == "accepted") != (rng.random() < 0.1) else None,
        first_touch_s=rng.choice(SECONDS) if touched and rng.random() < 0.9 else None,
        accept_sla=rng.choice((None, "met", "missed")) if status != "offered" else None,
        first_touch_sla=rng.choice((None, "met", "missed")) if status == "accepted" else None,
        outcome=outcome,
        amount=round(rng.uniform(100, 100000), 2) if outcome == "won" and rng.random() < 0.8 else None)


def _history(rng: random.Random) -> list[dict[str, Any]]:
    offers = []
    span = (MONTHS[-1][1] - MONTHS[0][0]).total_seconds()
    for partner_id in ("p-a", "p-b", "p-c", "p-d", "p-e", GHOST):
        for _ in range(rng.randint(20, 120)):
            # a little before the first window and after the last, mostly inside
            at = MONTHS[0][0] + timedelta(seconds=rng.uniform(-0.05, 1.05) * span)
            offers.append(_offer(rng, partner_id, at.replace(microsecond=0)))
        for start, end in MONTHS:  # on the bounds: in the window from its start, not at its end
            if rng.random() < 0.5:
                offers.append(_offer(rng, partner_id, start))
            if rng.random() < 0.5:
                offers.append(_offer(rng, partner_id, end - timedelta(microseconds=1)))
    solo = _offer(rng, "p-solo", MONTHS[1][0] + timedelta(days=3))
    offers.append({**solo, "status": "accepted", "accept_s": 42.0, "first_touch_s": 7.0,
                   "first_touch_at": solo["offered_at"] + timedelta(hours=1)})
    offers.append(_offer(rng, "p-idle", MONTHS[0][0] - timedelta(days=40)))
    return offers


async def _store(app: FastAPI, offers: Sequence[dict[str, Any]]) -> None:
    async with app.state.sessions() as session, session.begin():
        session.add_all(Partner(partner_id=pid, name=pid, tier="gold") for pid in PARTNERS)
        for offer in offers:
            lead_id = str(uuid.uuid4())
            session.add(Lead(lead_id=lead_id, source="generic", external_id=lead_id, status="offered",
                             company={"name": "X", "country": "US"}, contact={},
                             created_at=offer["offered_at"], updated_at=offer["offered_at"]))
            session.add(LeadOffer(lead_id=lead_id, **offer))


CALLS: list[tuple[str, list[Window], list[str] | None]] = [
    ("four months", MONTHS, None),
    ("four months, out of order", [MONTHS[2], MONTHS[0], MONTHS[3], MONTHS[1]], None),
    ("two months with a gap", [MONTHS[0], MONTHS[2]], None),
    *[(f"month {k}", [MONTHS[k]], None) for k in range(4)],
    ("everything", [(MONTHS[0][0] - timedelta(days=365), MONTHS[-1][1] + timedelta(days=365))], None),
    ("nothing in it", [(T0 - timedelta(days=900), T0 - timedelta(days=800))], None),
    ("some partners", MONTHS, ["p-b", "p-solo", GHOST, "p-idle", "p-b", "nobody"]),
    ("one partner, one month", [MONTHS[1]], ["p-solo"]),
    ("no partners", MONTHS, []),
]


async def _assert_paths_agree(app: FastAPI) -> dict[str, dict[tuple[int, str], OfferFigures]]:
    results = {}
    async with app.state.sessions() as session, session.begin():
        repo = MetricsRepository(session)
        jit = (await session.execute(text("SHOW jit"))).scalar_one()
        for name, windows, partner_ids in CALLS:
            portable = await repo._offer_figures_portable(windows, partner_ids=partner_ids)
            postgres = await repo._offer_figures_postgres(windows, partner_ids=partner_ids)
            assert postgres == portable, name
            assert await repo.offer_figures(windows, partner_ids=partner_ids) == portable, name
            results[name] = postgres
        # JIT was off for the statement only: the rest of the transaction runs with the setting it had
        assert (await session.execute(text("SHOW jit"))).scalar_one() == jit
    return results


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_postgres_path_equals_portable_path(app: FastAPI, seed: int) -> None:
    rng = random.Random(seed)
    offers = _history(rng)
    await _store(app, offers)

    results = await _assert_paths_agree(app)

    # not vacuous: the history reaches every case named above
    four = results["four months"]
    assert {pid for _, pid in four} == {"p-a", "p-b", "p-c", "p-d", "p-e", "p-solo", GHOST}
    assert four[(1, "p-solo")].median_time_to_accept_s == four[(1, "p-solo")].p90_time_to_accept_s == 42.0
    assert four[(1, "p-solo")].median_time_to_first_touch_s == 7.0
    assert any(f.p90_time_to_accept_s is not None and f.p90_time_to_accept_s != f.median_time_to_accept_s
               for f in four.values())
    null_rejections = sum(1 for o in offers if o["status"] == "rejected" and o["reason"] is None
                          and MONTHS[0][0] <= o["offered_at"] < MONTHS[-1][1])
    assert null_rejections > 0
    assert sum(f.rejected_by_reason.get("other", 0) for f in four.values()) >= null_rejections
    assert sum(f.counts["offered"] for f in results["everything"].values()) == len(offers)
    assert results["nothing in it"] == {} and results["no partners"] == {}
    assert {pid for _, pid in results["some partners"]} == {"p-b", "p-solo", GHOST}

    # a stored reason outside the closed list is reported by its name, as the portable path does
    legacy = {**_offer(rng, "p-c", MONTHS[2][0] + timedelta(days=1)), "status": "rejected",
              "reason": "legacy_reason"}
    await _store_offer(app, legacy)
    results = await _assert_paths_agree(app)
    assert results["four months"][(2, "p-c")].rejected_by_reason["legacy_reason"] == 1


async def _store_offer(app: FastAPI, offer: dict[str, Any]) -> None:
    async with app.state.sessions() as session, session.begin():
        lead_id = str(uuid.uuid4())
        session.add(Lead(lead_id=lead_id, source="generic", external_id=lead_id, status="offered",
                         company={"name": "X", "country": "US"}, contact={},
                         created_at=offer["offered_at"], updated_at=offer["offered_at"]))
        session.add(LeadOffer(lead_id=lead_id, **offer))


async def test_overlapping_windows_take_the_portable_path(app: FastAPI) -> None:
    """The portable path counts an offer in the first window it lies in; overlapping windows stay on it."""
    rng = random.Random(7)
    await _store(app, _history(rng))
    windows = [MONTHS[0], (MONTHS[0][0] + timedelta(days=10), MONTHS[1][1])]
    async with app.state.sessions() as session, session.begin():
        repo = MetricsRepository(session)
        assert await repo.offer_figures(windows) == await repo._offer_figures_portable(windows)


async def test_the_covering_index_is_migrated(app: FastAPI) -> None:
    """The migrations build ix_lead_offers_partner_offered with the INCLUDE the model declares (autogenerate
    does not compare INCLUDE columns, so tests/test_migrations.py would not notice a difference)."""
    index = next(i for i in LeadOffer.__table__.indexes if i.name == "ix_lead_offers_partner_offered")
    include = index.dialect_options["postgresql"]["include"]
    async with app.state.sessions() as session:
        definition = (await session.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_lead_offers_partner_offered'"))).scalar_one()
    assert definition.endswith(f"USING btree (partner_id, offered_at) INCLUDE ({', '.join(include)})")
