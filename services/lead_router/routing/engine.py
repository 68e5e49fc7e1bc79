"""The routing decision: pure functions over plain data, so it can be simulated, replayed and property-tested.

`decide` takes a lead, the candidate partners, the active rule set and the strategy state of the rules,
and returns a `Decision` that says where the lead goes, why, and the new strategy state to persist.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from services.lead_router.metrics.score import NEUTRAL, PARTS, WEIGHTS
from services.lead_router.routing.schemas import RouteTo, Rule, RuleSetBody, RuleWhen

Outcome = Literal["routed", "nurturing", "unroutable"]
DEFAULT_PRIOR_STRENGTH = 10.0


@dataclass(frozen=True)
class Performance:
    """A partner's record as `performance` sees it: per score part its (successes, trials), the part's prior
    `m` (the tier's pooled rate) and the prior strength `k`. No record at all is zero trials at 0.5."""

    tallies: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    priors: Mapping[str, float] = field(default_factory=dict)
    k: float = DEFAULT_PRIOR_STRENGTH


@dataclass(frozen=True)
class Territory:
    country: str
    regions: tuple[str, ...] = ()
    postal_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LeadFacts:
    lead_id: str
    source: str
    country: str  # ISO alpha-2 upper-case
    region: str | None
    postal_code: str | None
    product: str | None
    industry: str | None
    campaign: str | None
    score: int | None
    estimated_value: float | None
    employees: int | None


@dataclass(frozen=True)
class PartnerFacts:
    partner_id: str
    tier: str
    active: bool
    territories: tuple[Territory, ...]
    products: tuple[str, ...]  # empty = any
    industries: tuple[str, ...]  # empty = any
    max_open_leads: int | None  # None = unlimited
    open_leads: int  # leads currently offered/accepted/working for this partner
    performance: Performance | None = None  # the record `performance` samples from; None: no history


@dataclass(frozen=True)
class Candidate:
    partner_id: str
    eligible: bool
    reasons: tuple[str, ...]  # why NOT eligible; empty when eligible


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    partner_id: str | None
    rule: str | None
    strategy: str | None
    rule_set_version: int
    reason: str
    candidates: tuple[Candidate, ...]  # every partner given, sorted by partner_id
    state: dict[str, Any] | None  # new strategy state of `rule` to persist; None if unchanged
    details: Mapping[str, dict[str, Any]] | None = None  # per eligible partner, what the strategy weighed

    def explanation(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "partner_id": self.partner_id,
            "rule": self.rule,
            "strategy": self.strategy,
            "rule_set_version": self.rule_set_version,
            "reason": self.reason,
            "candidates": [
                {"partner_id": c.partner_id, "eligible": c.eligible, "reasons": list(c.reasons),
                 **({"performance": self.details[c.partner_id]}
                    if self.details and c.partner_id in self.details else {})}
                for c in self.candidates
            ],
        }


def decide(
    lead: LeadFacts,
    partners: Sequence[PartnerFacts],
    rule_set: RuleSetBody,
    *,
    version: int,
    state: Mapping[str, Mapping[str, Any]],
    excluded: Collection[str] = (),
) -> Decision:
    """Route `lead`: qualification gate, first matching rule, eligible partners, then the rule's strategy.

    `state` maps rule names to their persisted strategy state; `excluded` holds the partners that
    already rejected or were recalled from this lead. Deterministic, and never raises for valid input.
    """
    min_score = rule_set.qualification.min_score
    if min_score is not None and (lead.score is None or lead.score < min_score):
        if lead.score is None:
            reason = f"no score (min_score {min_score})"
        else:
            reason = f"score {lead.score} below min_score {min_score}"
        return Decision("nurturing", None, None, None, version, reason, (), None)

    rule = next((r for r in rule_set.rules if matches(r.when, lead)), None)
    if rule is None:
        return Decision("unroutable", None, None, None, version, "no rule matched", (), None)

    ordered = sorted(partners, key=lambda p: p.partner_id)
    candidates = tuple(assess(p, lead, rule, excluded) for p in ordered)
    eligible = [p for p, c in zip(ordered, candidates, strict=True) if c.eligible]
    if not eligible:
        reason = f"no eligible partner for rule {rule.name!r} ({len(ordered)} considered)"
        return Decision("unroutable", None, rule.name, rule.strategy, version, reason, candidates, None)

    old = state.get(rule.name) or {}
    pick, new, details = STRATEGIES[rule.strategy](eligible, old, rule_set, lead, version)
    noun = "partner" if len(eligible) == 1 else "partners"
    reason = f"{rule.strategy} among {len(eligible)} eligible {noun} under rule {rule.name!r}"
    changed = new if new != old else None
    return Decision("routed", pick, rule.name, rule.strategy, version, reason, candidates, changed, details)


def matches(when: RuleWhen, lead: LeadFacts) -> bool:
    """All given conditions hold. A condition on a value the lead lacks does not hold."""
    allowed = (
        (when.country, lead.country),
        (when.region, lead.region),
        (when.product, lead.product),
        (when.industry, lead.industry),
        (when.source, lead.source),
        (when.campaign, lead.campaign),
    )
    bounds = (
        (when.min_score, None, lead.score),
        (when.min_value, when.max_value, lead.estimated_value),
        (when.min_employees, when.max_employees, lead.employees),
    )
    return all(values is None or _within(value, values) for values, value in allowed) and all(
        _in_bounds(value, low, high) for low, high, value in bounds
    )


def assess(partner: PartnerFacts, lead: LeadFacts, rule: Rule, excluded: Collection[str] = ()) -> Candidate:
    """Whether `partner` may take `lead` under `rule`, with every reason it may not."""
    reasons: list[str] = []
    if not partner.active:
        reasons.append("inactive")
    if not any(_covers(t, lead) for t in partner.territories):
        where = "/".join(v for v in (lead.country, lead.region, lead.postal_code) if v)
        reasons.append(f"territory: does not cover {where}")
    if lead.product is not None and partner.products and not _within(lead.product, partner.products):
        reasons.append(f"product: does not sell {lead.product}")
    if lead.industry is not None and partner.industries and not _within(lead.industry, partner.industries):
        reasons.append(f"industry: does not serve {lead.industry}")
    if partner.max_open_leads is not None and partner.open_leads >= partner.max_open_leads:
        reasons.append(f"capacity: {partner.open_leads} of {partner.max_open_leads} open leads")
    if partner.partner_id in excluded:
        reasons.append("already rejected or recalled for this lead")
    route_to = rule.route_to or RouteTo()
    if route_to.tiers is not None and partner.tier not in route_to.tiers:
        reasons.append(f"not in rule route_to tiers [{', '.join(route_to.tiers)}]")
    if route_to.partner_ids is not None and partner.partner_id not in route_to.partner_ids:
        reasons.append("not in rule route_to partner_ids")
    return Candidate(partner.partner_id, not reasons, tuple(reasons))


def _within(value: str | None, allowed: Collection[str]) -> bool:
    return value is not None and value.casefold() in {a.casefold() for a in allowed}


def _in_bounds(value: float | None, low: float | None, high: float | None) -> bool:
    if low is None and high is None:
        return True
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def _covers(territory: Territory, lead: LeadFacts) -> bool:
    """Same country; then, if the territory lists regions or postal prefixes, the lead must match them."""
    if territory.country.upper() != lead.country.upper():
        return False
    if territory.regions and not _within(lead.region, territory.regions):
        return False
    if territory.postal_prefixes:
        postal = _postal(lead.postal_code or "")
        return bool(postal) and any(postal.startswith(_postal(p)) for p in territory.postal_prefixes)
    return True


def _postal(code: str) -> str:
    return code.replace(" ", "").upper()


# --- strategies: (eligible partners, the rule's old state, rule set, lead, rule-set version)
#     -> (pick, the rule's new state, what was weighed per partner or None) ---

Details = dict[str, dict[str, Any]]
StrategyFn = Callable[[Sequence[PartnerFacts], Mapping[str, Any], RuleSetBody, LeadFacts, int],
                      tuple[str, dict[str, Any], Details | None]]


def _next_after(last: Any, ids: Sequence[str]) -> str:
    """The first id in sorted order strictly after `last`, wrapping around.

    Keying the cursor on the id (not a position) keeps the rotation fair when partners come and go:
    a newcomer takes its sorted place in the cycle and nobody is skipped or served twice.
    """
    ordered = sorted(ids)
    if not isinstance(last, str):
        return ordered[0]
    return next((i for i in ordered if i > last), ordered[0])


def _round_robin(
    eligible: Sequence[PartnerFacts], old: Mapping[str, Any], rule_set: RuleSetBody, lead: LeadFacts, version: int
) -> tuple[str, dict[str, Any], Details | None]:
    """Fair rotation over the eligible partners; state `{"last": partner_id}`."""
    pick = _next_after(old.get("last"), [p.partner_id for p in eligible])
    return pick, {"last": pick}, None


def _least_loaded(
    eligible: Sequence[PartnerFacts], old: Mapping[str, Any], rule_set: RuleSetBody, lead: LeadFacts, version: int
) -> tuple[str, dict[str, Any], Details | None]:
    """Fewest open leads; partners tied on that rotate with the round-robin cursor `{"last": ...}`."""
    fewest = min(p.open_leads for p in eligible)
    pick = _next_after(old.get("last"), [p.partner_id for p in eligible if p.open_leads == fewest])
    return pick, {"last": pick}, None


def _weighted(
    eligible: Sequence[PartnerFacts], old: Mapping[str, Any], rule_set: RuleSetBody, lead: LeadFacts, version: int
) -> tuple[str, dict[str, Any], Details | None]:
    """Smooth weighted round robin (nginx), weight = the partner's tier weight.

    Every decision adds each partner's weight to its `current`, picks the highest (ties: lowest id) and
    subtracts the total weight from the pick. Over a cycle of total-weight decisions each partner is
    picked exactly weight times, spread out rather than in bursts. State `{"current": {partner_id: x}}`.

    Entries of partners no longer eligible are dropped; the rest are re-centred on zero and newcomers
    start at zero, i.e. level with the average, so a change of the eligible set biases nobody for long.
    """
    raw = old.get("current")
    saved = {
        k: float(v)
        for k, v in (raw.items() if isinstance(raw, Mapping) else ())
        if isinstance(v, int | float) and math.isfinite(v)
    }
    tier_weight: dict[str, float] = {t: w for t, w in rule_set.tier_weights.items()}  # unknown tier: 1
    weights = {p.partner_id: tier_weight.get(p.tier, 1.0) for p in eligible}
    kept = [saved[pid] for pid in weights if pid in saved]
    mean = sum(kept) / len(kept) if kept else 0.0
    current = {pid: saved.get(pid, mean) - mean + w for pid, w in weights.items()}
    pick = min(current, key=lambda pid: (-current[pid], pid))
    current[pick] -= sum(weights.values())
    return pick, {"current": dict(sorted(current.items()))}, None


def _performance(
    eligible: Sequence[PartnerFacts], old: Mapping[str, Any], rule_set: RuleSetBody, lead: LeadFacts, version: int
) -> tuple[str, dict[str, Any], Details | None]:
    """Thompson sampling over the partners' shrunk scores: explore a new partner, exploit a proven one.

    A partner's score (0.3·acceptance + 0.3·first_touch_sla + 0.4·win, each part `(s + k·m) / (t + k)`,
    shrunk toward its tier's pooled rate `m`) is the mean of a Beta posterior with as much evidence as the
    partner's record holds: `n = 0.3·t_acceptance + 0.3·t_first_touch_sla + 0.4·t_win` trials plus the prior's
    `k`, i.e. `Beta(score·(n + k), (1 − score)·(n + k))`. One value is drawn per eligible partner; the highest
    draw gets the lead (ties: fewer open leads, then the lowest id). A partner with no history draws from its
    tier's prior with only `k` of evidence, wide, so it still wins a share of leads until its own record
    speaks (explore); a partner with a long record draws close to its score, so a proven good one gets most
    leads and a proven poor one almost none (exploit). (Drawing each part separately would average three
    draws and narrow the newcomer's spread so much that it would hardly ever be tried.)

    The draws come from a generator seeded with the lead id and the rule-set version, taken in partner-id
    order: the same inputs give the same decision, so it can be replayed. Stateless. Per partner the
    explanation keeps `score`, `score_parts`, `tallies` ([successes, trials] per part), `priors`, `evidence`
    (`n`), the `draw`, and `weight` = `n / (n + k)`, how much the partner's own record weighs against the prior.
    """
    seed = int.from_bytes(hashlib.sha256(f"{lead.lead_id}|{version}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    details: Details = {}
    for p in sorted(eligible, key=lambda p: p.partner_id):
        perf = p.performance or Performance()
        parts, tallies, priors = {}, {}, {}
        for part in PARTS:
            successes, trials = perf.tallies.get(part, (0, 0))
            m = perf.priors.get(part, NEUTRAL)
            parts[part] = (successes + perf.k * m) / (trials + perf.k)
            tallies[part], priors[part] = [successes, trials], m
        score = sum(WEIGHTS[part] * parts[part] for part in PARTS)
        evidence = sum(WEIGHTS[part] * tallies[part][1] for part in PARTS)
        strength = evidence + perf.k
        draw = rng.betavariate(max(score * strength, 1e-9), max((1 - score) * strength, 1e-9))
        details[p.partner_id] = {"score": score, "score_parts": parts, "tallies": tallies, "priors": priors,
                                 "evidence": evidence, "draw": draw, "weight": evidence / strength}
    pick = min(eligible, key=lambda p: (-details[p.partner_id]["draw"], p.open_leads, p.partner_id))
    return pick.partner_id, dict(old), details


STRATEGIES: dict[str, StrategyFn] = {
    "round_robin": _round_robin,
    "weighted": _weighted,
    "least_loaded": _least_loaded,
    "performance": _performance,
}
