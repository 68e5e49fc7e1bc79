"""Routing with the database around the pure engine: load facts, decide, persist decision and state."""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from services.lead_router.intake.schemas import LeadIn
from services.lead_router.lead import timeline
from services.lead_router.lead.states import NURTURING, OFFERED, RECEIVED, UNROUTABLE
from services.lead_router.metrics.service import Scorecards, scorecards
from services.lead_router.notify import service as notify
from services.lead_router.partner.repository import PartnerRepository
from services.lead_router.routing.engine import Decision, LeadFacts, PartnerFacts, Performance, Territory, decide
from services.lead_router.routing.repository import RoutingRepository
from services.lead_router.routing.schemas import DEFAULT_RULE_SET, RuleSetBody, RuleSetRead
from shared.config import Settings
from shared.db import stage_insert, stage_update
from shared.errors import Conflict, ValidationFailed
from shared.models import Lead, LeadOffer, Partner, RuleSet, utcnow
from shared.observability import stage

DECIDE_STAGE = stage("decide")
_DECIDED = "routing:decided"  # Session.info: (transaction, ids of the leads it decided; their writes staged)


def lead_facts(lead: Lead) -> LeadFacts:
    company = lead.company or {}
    return LeadFacts(lead_id=lead.lead_id, source=lead.source, country=str(company.get("country", "")).upper(),
                     region=company.get("region"), postal_code=company.get("postal_code"), product=lead.product,
                     industry=company.get("industry"), campaign=lead.campaign, score=lead.score,
                     estimated_value=lead.estimated_value, employees=company.get("employees"))


def partner_facts(partner: Partner) -> PartnerFacts:
    """A partner as routing holds it between changes: its open leads and record are set per batch (`_candidates`)."""
    territories = tuple(Territory(country=t["country"], regions=tuple(t.get("regions") or ()),
                                  postal_prefixes=tuple(t.get("postal_prefixes") or ()))
                        for t in partner.territories)
    return PartnerFacts(partner_id=partner.partner_id, tier=partner.tier, active=partner.active,
                        territories=territories, products=tuple(partner.products),
                        industries=tuple(partner.industries), max_open_leads=partner.max_open_leads,
                        open_leads=0)


def _performance(partner_id: str, tier: str, cards: Scorecards | None) -> Performance | None:
    if cards is None:
        return None
    record = cards.records.get(partner_id)
    tallies = {part: (t.successes, t.trials) for part, t in record.tallies.items()} if record else {}
    return Performance(tallies=tallies, priors=cards.priors.get(tier, {}), k=cards.k)


@dataclass(frozen=True)
class Inputs:
    """What routing reads that changes rarely: the active rule set and the partners (their open leads at 0,
    no record: both are set per batch), with the calendars that travel on `lead.routed`."""

    version: int | None
    rule_set: RuleSetRead
    partners: tuple[PartnerFacts, ...]
    calendars: dict[str, dict[str, Any]]
    webhooks: dict[str, notify.Webhook]


# Per database engine, the inputs last read and the version they were read at.
_INPUTS: weakref.WeakKeyDictionary[Any, Inputs] = weakref.WeakKeyDictionary()


async def routing_inputs(session: AsyncSession, version: int | None) -> Inputs:
    """The rule set and partners: those read before while `version` (`RoutingRepository.waiting_leads`) is
    the one they were read at, else read now (after the version, so never older than it says)."""
    engine = session.sync_session.get_bind()
    cached = _INPUTS.get(engine)
    if version is not None and cached is not None and cached.version == version:
        return cached
    partners = await PartnerRepository(session).all()
    inputs = Inputs(version, await active_rule_set(session), tuple(partner_facts(p) for p in partners),
                    {p.partner_id: partner_calendar(p) for p in partners},
                    {p.partner_id: notify.webhook_of(p) for p in partners})
    if version is not None:
        _INPUTS[engine] = inputs
    return inputs


async def _scorecards(session: AsyncSession, settings: Settings, rule_set: RuleSetBody) -> Scorecards | None:
    """The partners' records, read only when some rule routes by `performance`."""
    if not any(rule.strategy == "performance" for rule in rule_set.rules):
        return None
    return await scorecards(session, settings)


async def active_rule_set(session: AsyncSession) -> RuleSetRead:
    row = await RoutingRepository(session).active_rule_set()
    if row is None:
        return RuleSetRead(**DEFAULT_RULE_SET.model_dump(), version=0, created_at=None)
    return RuleSetRead(**row.body, version=row.version, created_at=row.created_at)


async def put_rule_set(session: AsyncSession, body: RuleSetBody, *, attempts: int = 10) -> RuleSetRead:
    """Store `body` as the next version. Two concurrent PUTs may both pick the same next version; the
    loser retries in a savepoint (on PostgreSQL its next read sees the winner's committed row)."""
    nul = [f"rules.{i}.name" for i, rule in enumerate(body.rules) if "\x00" in rule.name]
    if nul:  # rule names key the strategy state, a text column PostgreSQL cannot store NUL in
        raise ValidationFailed("Rule names must not contain NUL characters.", errors=[
            {"field": field, "message": "must not contain NUL characters", "type": "value_error"} for field in nul])
    repo = RoutingRepository(session)
    for _ in range(attempts):
        row = RuleSet(version=await repo.next_version(), body=body.model_dump(mode="json"), created_at=utcnow())
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:
            continue
        return RuleSetRead(**row.body, version=row.version, created_at=row.created_at)
    raise Conflict("The rule set was replaced concurrently too often; try again.")


def _candidates(inputs: Inputs, loads: dict[str, int], cards: Scorecards | None) -> list[PartnerFacts]:
    """Every partner as a decision sees it: its open leads and, for `performance`, its record."""
    return [replace(facts, open_leads=loads.get(facts.partner_id, 0),
                    performance=_performance(facts.partner_id, facts.tier, cards)) for facts in inputs.partners]


async def route_lead(session: AsyncSession, lead_id: str, *, settings: Settings) -> Decision | None:
    """Route one waiting lead; None when it is not waiting (already routed, accepted, ...)."""
    decisions = await route_leads(session, [lead_id], settings=settings)
    return decisions[0] if decisions else None


async def route_leads(session: AsyncSession, lead_ids: Sequence[str], *, settings: Settings,
                      look_first: bool = True) -> list[Decision]:
    """Route the waiting leads among `lead_ids`, in order, in the caller's transaction.

    Routing is serialized (an advisory lock on PostgreSQL; SQLite's write lock), so capacity counts and
    strategy state are consistent across router instances. Partners, counts, rules and state are read once
    per batch and carried from one decision to the next, so a batch costs a handful of statements.
    `look_first`: first check, without the lock, that some lead is still waiting (a caller that has just
    stored them as waiting skips that read).

    Every write of a decision is staged and reaches the database at commit (one statement): a lead decided
    earlier in the same transaction is not decided again, and routing inside a savepoint is refused (its
    rollback would drop the writes but not the leads' new state in memory)."""
    began = time.monotonic()
    sync = session.sync_session
    if sync.in_nested_transaction():
        raise RuntimeError("route_leads writes at commit: call it outside savepoints")
    transaction, decided = sync.info.get(_DECIDED, (None, set()))
    if transaction is not sync.get_transaction():  # another transaction's, or none yet
        decided = set()
    wanted = [i for i in dict.fromkeys(lead_ids) if i not in decided]
    if not wanted:
        return []
    # Most leads are routed by the process that stored them (routing/eager.py) before their event arrives
    # here: a batch with no lead waiting costs one read and, on PostgreSQL, never queues for the routing lock
    # (on SQLite every transaction holds the database's write lock anyway). A lead read
    # as not waiting cannot start waiting again without a later event (rejected, recalled, re-scored).
    repo = RoutingRepository(session)
    if look_first and not await repo.any_waiting(wanted):
        return []
    await repo.lock_routing()
    waiting = await repo.waiting_leads(wanted)  # with the strategy states and the partners' loads
    by_id = {lead.lead_id: lead for lead in waiting.leads}
    leads = [by_id[i] for i in wanted if i in by_id]
    if not leads:
        return []
    inputs = await routing_inputs(session, waiting.version)  # no statement while partners and rules are unchanged
    rule_set = inputs.rule_set
    state, loads = waiting.states, waiting.loads
    # A lead never offered (most: new ones) has no partner to exclude; only the others cost a read.
    offered_before = [lead.lead_id for lead in leads if lead.routed_at is not None]
    excluded = await repo.excluded_partners(offered_before) if offered_before else {}
    cards = await _scorecards(session, settings, rule_set)
    candidates = _candidates(inputs, loads, cards)  # once per batch
    position = {facts.partner_id: i for i, facts in enumerate(candidates)}
    changed: set[str] = set()
    decisions = []
    for lead in leads:
        decision = decide(lead_facts(lead), candidates, rule_set, version=rule_set.version, state=state,
                          excluded=excluded.get(lead.lead_id, set()))
        _apply(session, settings, lead, decision, inputs)
        if decision.partner_id is not None:  # its open leads count one more for the next decision
            i = position[decision.partner_id]
            candidates[i] = replace(candidates[i], open_leads=candidates[i].open_leads + 1)
        if decision.state is not None and decision.rule is not None:
            state[decision.rule] = decision.state
            changed.add(decision.rule)
        decisions.append(decision)
    for rule in changed:
        repo.save_state(rule, state[rule])
    sync.info[_DECIDED] = (sync.get_transaction(), decided | {lead.lead_id for lead in leads})
    await session.flush()
    DECIDE_STAGE.observe(time.monotonic() - began)
    return decisions


def partner_calendar(partner: Partner) -> dict[str, Any]:
    """What the SLA monitor needs to time the offer's clocks in the partner's business hours. It travels on
    `lead.routed`, so the clocks are right even when `partner.upserted` (another topic, no order between
    them) reaches the monitor after the offer."""
    return {"timezone": partner.timezone, "business_hours": partner.business_hours,
            "holiday_country": partner.holiday_country}


def _apply(session: AsyncSession, settings: Settings, lead: Lead, decision: Decision, inputs: Inputs) -> None:
    """The decision's writes, all staged: the lead's new state, its offer, its event and timeline row go in the
    one statement that writes the transaction's staged rows at commit (the ORM object is given the same
    values as committed state, so no flush writes it again)."""
    now = utcnow()
    explanation = decision.explanation()
    state: dict[str, Any]
    if decision.outcome == "nurturing":
        state = {"status": NURTURING}
        name = "lead.nurturing"
    elif decision.outcome == "unroutable":
        state = {"status": UNROUTABLE, "partner_id": None}
        name = "lead.unroutable"
    else:
        assert decision.partner_id is not None
        state = {"status": OFFERED, "partner_id": decision.partner_id, "routed_at": now}
        name = "lead.routed"
    for attribute, value in {**state, "updated_at": now}.items():
        set_committed_value(lead, attribute, value)
    stage_update(session, Lead, "lead_id", {"lead_id": lead.lead_id, "status": lead.status,
                                            "partner_id": lead.partner_id, "routed_at": lead.routed_at,
                                            "updated_at": now})
    if decision.partner_id is None:
        timeline.record(session, settings, lead, name, data=explanation, at=now)
        return
    # Nothing reads the offer back in the routing transaction.
    stage_insert(session, LeadOffer, {"lead_id": lead.lead_id, "partner_id": decision.partner_id,
                                      "status": "offered", "offered_at": now})
    timeline.record(session, settings, lead, name, data=explanation, at=now,
                    event_only={"partner_calendar": inputs.calendars.get(decision.partner_id)})
    notify.stage_offer(session, settings=settings, partner_id=decision.partner_id,
                       webhook=inputs.webhooks.get(decision.partner_id), lead=lead, at=now)


async def simulate(session: AsyncSession, leads: Sequence[LeadIn], *, settings: Settings) -> list[dict[str, Any]]:
    """Decisions for hypothetical leads against the current partners, rules and state; writes nothing.

    Strategy state is carried from one simulated lead to the next, as it would be for real traffic."""
    inputs = await routing_inputs(session, None)  # read now: no lock, no version
    rule_set = inputs.rule_set
    state, loads = await RoutingRepository(session).states_and_loads()
    partners = _candidates(inputs, loads, await _scorecards(session, settings, rule_set))
    out = []
    for i, body in enumerate(leads):
        facts = LeadFacts(lead_id=f"simulated-{i}", source="simulation", country=body.company.country,
                          region=body.company.region, postal_code=body.company.postal_code, product=body.product,
                          industry=body.company.industry, campaign=body.campaign, score=body.score,
                          estimated_value=body.estimated_value, employees=body.company.employees)
        decision = decide(facts, partners, rule_set, version=rule_set.version, state=state)
        if decision.state is not None and decision.rule is not None:
            state[decision.rule] = decision.state
        out.append({"external_id": body.external_id, **decision.explanation()})
    return out


async def waiting_leads(session: AsyncSession, *, older_than: datetime | None, limit: int = 500) -> list[str]:
    """Leads in `received`: new, or rejected and not yet routed on (used by the reconciler)."""
    query = select(Lead.lead_id).where(Lead.status == RECEIVED).order_by(Lead.updated_at).limit(limit)
    if older_than is not None:
        query = query.where(Lead.updated_at < older_than)
    return list((await session.scalars(query)).all())


def grace_cutoff(seconds: float) -> datetime:
    return utcnow() - timedelta(seconds=seconds)
