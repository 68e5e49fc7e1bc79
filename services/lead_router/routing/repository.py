from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import JSON, Integer, bindparam, func, literal, null, select, text, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from services.lead_router.lead.states import ROUTABLE
from shared.db import is_postgres, stage_upsert
from shared.models import Lead, LeadOffer, PartnerLoad, RoutingInputsVersion, RoutingState, RuleSet, utcnow

ROUTING_LOCK_KEY = 746_215_002


class Waiting(NamedTuple):
    leads: list[Lead]
    version: int | None  # of routing's inputs
    states: dict[str, dict[str, Any]]  # strategy state by rule
    loads: dict[str, int]  # open leads by partner


class RoutingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def active_rule_set(self) -> RuleSet | None:
        return await self.session.scalar(select(RuleSet).order_by(RuleSet.version.desc()).limit(1))

    async def next_version(self) -> int:
        return int(await self.session.scalar(select(func.coalesce(func.max(RuleSet.version), 0))) or 0) + 1

    async def lock_routing(self) -> None:
        """Serialize routing decisions across instances (SQLite's write lock already does)."""
        if is_postgres(self.session):
            await self.session.execute(_LOCK)

    async def any_waiting(self, lead_ids: list[str]) -> bool:
        """Whether any of `lead_ids` is waiting to be routed (no lock taken, no lead loaded)."""
        return await self.session.scalar(_ANY_WAITING, {"ids": lead_ids}) is not None

    async def waiting_leads(self, lead_ids: list[str]) -> Waiting:
        """The leads among `lead_ids` still waiting to be routed, locked, in id order; with the version of
        routing's inputs (`RoutingInputsVersion`; None: no row), read by the same statement, and every rule's
        strategy state and every partner's open leads. Called under the routing lock: the statement's snapshot
        is taken after the lock was granted, so the version is as new as any partner or rule set a decision
        could see (read in the lock's statement, it would come from a snapshot taken before the wait, and a
        change committed meanwhile would be missed).

        One lead on PostgreSQL (routing on intake at moderate rates: a transaction a lead) reads the states and
        loads in the same statement, one round trip fewer. Not for more: every row would carry them (sorted,
        sent and decoded once a lead; 200 leads with large weighted states took ~50 times as long). A lead row
        that was locked by another transaction and re-checked keeps the statement's loads, possibly counting
        one open lead that has just closed: never fewer than there are, so capacity holds."""
        if len(lead_ids) == 1 and is_postgres(self.session):
            rows = (await self.session.execute(_WAITING_ONE, {"ids": lead_ids})).all()
            if not rows:
                return Waiting([], None, {}, {})
            lead, version, states, loads = rows[0]
            return Waiting([lead], version, {rule: dict(state or {}) for rule, state in (states or {}).items()},
                           {partner: int(n) for partner, n in (loads or {}).items()})
        found = (await self.session.execute(_WAITING, {"ids": lead_ids})).all()
        if not found:
            return Waiting([], None, {}, {})
        states, loads = await self.states_and_loads()
        return Waiting([lead for lead, _ in found], found[0][1], states, loads)

    async def states_and_loads(self) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        """Every rule's strategy state and every partner's open leads, in one statement (both change with
        each decision, so they are read under the lock, never reused)."""
        states: dict[str, dict[str, Any]] = {}
        loads: dict[str, int] = {}
        for kind, key, state, open_leads in (await self.session.execute(_STATES_AND_LOADS)).all():
            if kind == "state":
                states[key] = dict(state or {})
            else:
                loads[key] = int(open_leads)
        return states, loads

    def save_state(self, rule: str, state: dict[str, Any]) -> None:
        """Staged: written with the batch's other writes in one statement at commit (`shared.db.stage_upsert`)."""
        stage_upsert(self.session, RoutingState, "rule", {"rule": rule, "state": state, "updated_at": utcnow()})

    async def excluded_partners(self, lead_ids: list[str]) -> dict[str, set[str]]:
        """Per lead, the partners that rejected it or had it recalled: never offered it again."""
        rows = await self.session.execute(select(LeadOffer.lead_id, LeadOffer.partner_id).where(
            LeadOffer.lead_id.in_(lead_ids), LeadOffer.status.in_(("rejected", "recalled"))))
        out: dict[str, set[str]] = {}
        for lead_id, partner_id in rows.all():
            out.setdefault(lead_id, set()).add(partner_id)
        return out


# Built once (the hot path: a routing transaction per webhook at moderate rates): a statement built per call
# costs its construction and its cache key every time, more CPU than the round trip it makes.
_VERSION = select(RoutingInputsVersion.version).where(RoutingInputsVersion.id == 1)
_LOCK = text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=ROUTING_LOCK_KEY)
_WAITING_WHERE = (Lead.lead_id.in_(bindparam("ids", expanding=True)), Lead.status.in_(ROUTABLE))
_ANY_WAITING = select(Lead.lead_id).where(*_WAITING_WHERE).limit(1)
_WAITING = (select(Lead, _VERSION.scalar_subquery()).where(*_WAITING_WHERE).order_by(Lead.lead_id)
            .with_for_update(of=Lead))
# PostgreSQL, one lead: with every state and load as JSON objects (computed once, as init plans).
_WAITING_ONE = (select(Lead, _VERSION.scalar_subquery(),
                       type_coerce(select(func.json_object_agg(RoutingState.rule, RoutingState.state))
                                   .scalar_subquery(), JSON),
                       type_coerce(select(func.json_object_agg(PartnerLoad.partner_id, PartnerLoad.open_leads))
                                   .scalar_subquery(), JSON))
                .where(*_WAITING_WHERE).order_by(Lead.lead_id).with_for_update(of=Lead))
_STATES_AND_LOADS = union_all(
    select(literal("state"), RoutingState.rule, RoutingState.state, null().cast(Integer)),
    select(literal("load"), PartnerLoad.partner_id, null().cast(JSON), PartnerLoad.open_leads))

