from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.lead_router.metrics.score import PARTS
from services.lead_router.routing.engine import (
    Decision,
    LeadFacts,
    PartnerFacts,
    Performance,
    Territory,
    decide,
)
from services.lead_router.routing.schemas import (
    DEFAULT_RULE_SET,
    Qualification,
    RouteTo,
    Rule,
    RuleSetBody,
    RuleSetRead,
    RuleWhen,
)

TIERS = ["platinum", "gold", "silver", "registered"]
WEIGHTS = {"platinum": 4, "gold": 3, "silver": 2, "registered": 1}


def make_lead(**overrides: Any) -> LeadFacts:
    fields: dict[str, Any] = dict(
        lead_id="lead-1",
        source="generic",
        country="US",
        region="CA",
        postal_code="94107",
        product="storage",
        industry="healthcare",
        campaign="q3-webinar",
        score=82,
        estimated_value=120000.0,
        employees=1200,
    )
    return LeadFacts(**{**fields, **overrides})


def make_partner(partner_id: str, **overrides: Any) -> PartnerFacts:
    fields: dict[str, Any] = dict(
        tier="gold",
        active=True,
        territories=(Territory("US"),),
        products=(),
        industries=(),
        max_open_leads=None,
        open_leads=0,
    )
    return PartnerFacts(partner_id=partner_id, **{**fields, **overrides})


def rule_set(*rules: Rule, **fields: Any) -> RuleSetBody:
    return RuleSetBody(rules=list(rules) or [Rule(name="all")], **fields)


def run(lead: LeadFacts, partners: list[PartnerFacts], rules: RuleSetBody, n: int) -> list[Decision]:
    """`n` decisions for the same lead, feeding each decision's strategy state into the next."""
    state: dict[str, dict[str, Any]] = {}
    decisions = []
    for _ in range(n):
        decision = decide(lead, partners, rules, version=1, state=state)
        if decision.state is not None and decision.rule is not None:
            state[decision.rule] = decision.state
        decisions.append(decision)
    return decisions


# --- the oracle: eligibility and rule matching written again, plainly, from the contract ---


def same(a: str, b: str | None) -> bool:
    return b is not None and a.lower() == b.lower()


def oracle_eligible(p: PartnerFacts, lead: LeadFacts, rule: Rule, excluded: set[str]) -> bool:
    def covers(t: Territory) -> bool:
        region_ok = not t.regions or any(same(r, lead.region) for r in t.regions)
        postal = (lead.postal_code or "").upper()
        postal_ok = not t.postal_prefixes or (postal != "" and any(postal.startswith(x) for x in t.postal_prefixes))
        return t.country == lead.country and region_ok and postal_ok

    sells = lead.product is None or not p.products or any(same(x, lead.product) for x in p.products)
    serves = lead.industry is None or not p.industries or any(same(x, lead.industry) for x in p.industries)
    has_room = p.max_open_leads is None or p.open_leads < p.max_open_leads
    tiers_ok = rule.route_to is None or rule.route_to.tiers is None or p.tier in rule.route_to.tiers
    ids_ok = rule.route_to is None or rule.route_to.partner_ids is None or p.partner_id in rule.route_to.partner_ids
    return (
        p.active
        and any(covers(t) for t in p.territories)
        and sells
        and serves
        and has_room
        and p.partner_id not in excluded
        and tiers_ok
        and ids_ok
    )


def oracle_matches(when: RuleWhen, lead: LeadFacts) -> bool:
    for field in ("country", "region", "product", "industry", "source", "campaign"):
        allowed, value = getattr(when, field), getattr(lead, field)
        if allowed is not None and not any(same(a, value) for a in allowed):
            return False
    bounds = [
        (when.min_score, lead.score, True),
        (when.min_value, lead.estimated_value, True),
        (when.max_value, lead.estimated_value, False),
        (when.min_employees, lead.employees, True),
        (when.max_employees, lead.employees, False),
    ]
    for bound, value, is_min in bounds:
        if bound is not None and (value is None or (value < bound if is_min else value > bound)):
            return False
    return True


# --- generators ---

PARTNER_IDS = [f"p{i}" for i in range(8)]
PRODUCTS = ["storage", "Storage", "backup", "compute"]
INDUSTRIES = ["healthcare", "retail", "RETAIL"]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def some(values: list[str], max_size: int = 2) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=max_size, unique=True)


def restriction(values: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    """Mostly no restriction at all, so that enough generated partners are eligible."""
    return st.one_of(st.just(()), st.just(()), some(values).map(tuple))


territories = st.builds(
    Territory,
    country=st.sampled_from(["US", "US", "US", "DE"]),
    regions=restriction(["CA", "TX", "OR"]),
    postal_prefixes=restriction(["94", "941", "10", "9"]),
)

partners_st = st.lists(
    st.builds(
        PartnerFacts,
        partner_id=st.sampled_from(PARTNER_IDS),
        tier=st.sampled_from(TIERS),
        active=st.sampled_from([True, True, True, False]),
        territories=st.lists(territories, min_size=1, max_size=2).map(tuple),
        products=restriction(PRODUCTS),
        industries=restriction(INDUSTRIES),
        max_open_leads=maybe(st.integers(1, 6)),
        open_leads=st.integers(0, 4),
        performance=maybe(st.builds(
            Performance,
            tallies=st.fixed_dictionaries({part: st.tuples(st.integers(0, 20), st.integers(0, 20)).map(
                lambda st_: (min(st_), max(st_))) for part in PARTS}),
            priors=st.fixed_dictionaries({part: st.floats(0, 1) for part in PARTS}),
            k=st.floats(0.5, 50))),
    ),
    max_size=8,
    unique_by=lambda p: p.partner_id,
)

leads_st = st.builds(
    LeadFacts,
    lead_id=st.just("lead"),
    source=st.sampled_from(["generic", "hubspot"]),
    country=st.sampled_from(["US", "US", "US", "DE", "FR"]),
    region=maybe(st.sampled_from(["CA", "CA", "TX", "OR"])),
    postal_code=maybe(st.sampled_from(["94107", "94107", "10115", "9", "30301"])),
    product=maybe(st.sampled_from(PRODUCTS)),
    industry=maybe(st.sampled_from(INDUSTRIES)),
    campaign=maybe(st.sampled_from(["q3-webinar", "Q3-WEBINAR", "expo"])),
    score=maybe(st.integers(0, 100)),
    estimated_value=maybe(st.floats(0, 200000)),
    employees=maybe(st.integers(0, 5000)),
)
excluded_st = st.sets(st.sampled_from(PARTNER_IDS), max_size=2)


@st.composite
def whens(draw: st.DrawFn) -> RuleWhen:
    def ordered(bounds: st.SearchStrategy[Any]) -> tuple[Any, Any]:
        low, high = draw(maybe(bounds)), draw(maybe(bounds))
        if low is not None and high is not None and low > high:
            low, high = high, low
        return low, high

    min_value, max_value = ordered(st.floats(0, 200000))
    min_employees, max_employees = ordered(st.integers(0, 5000))
    return RuleWhen(
        country=draw(maybe(some(["US", "us", "DE"]))),
        region=draw(maybe(some(["CA", "tx"]))),
        product=draw(maybe(some(PRODUCTS))),
        industry=draw(maybe(some(INDUSTRIES))),
        source=draw(maybe(some(["generic", "hubspot"]))),
        campaign=draw(maybe(some(["q3-webinar", "expo"]))),
        min_score=draw(maybe(st.integers(0, 100))),
        min_value=min_value,
        max_value=max_value,
        min_employees=min_employees,
        max_employees=max_employees,
    )


@st.composite
def rule_sets(draw: st.DrawFn) -> RuleSetBody:
    rules = [
        Rule(
            name=f"r{i}",
            when=draw(st.just(RuleWhen()) | whens()),
            route_to=draw(
                maybe(st.builds(RouteTo, tiers=maybe(some(TIERS, 3)), partner_ids=maybe(some(PARTNER_IDS, 5))))
            ),
            strategy=draw(st.sampled_from(["round_robin", "weighted", "least_loaded", "performance"])),
        )
        for i in range(draw(st.integers(1, 3)))
    ]
    if draw(st.booleans()):
        rules.append(Rule(name="catch-all"))
    return RuleSetBody(qualification=Qualification(min_score=draw(maybe(st.integers(0, 60)))), rules=rules)


# --- properties ---


@settings(max_examples=400)
@given(lead=leads_st, partners=partners_st, rules=rule_sets(), excluded=excluded_st)
def test_decision_agrees_with_the_oracle(
    lead: LeadFacts, partners: list[PartnerFacts], rules: RuleSetBody, excluded: set[str]
) -> None:
    decision = decide(lead, partners, rules, version=7, state={}, excluded=excluded)
    assert decision == decide(lead, partners, rules, version=7, state={}, excluded=excluded)
    json.dumps(decision.explanation())
    assert decision.rule_set_version == 7

    bar = rules.qualification.min_score
    if bar is not None and (lead.score is None or lead.score < bar):
        assert (decision.outcome, decision.partner_id, decision.candidates) == ("nurturing", None, ())
        return
    rule = next((r for r in rules.rules if oracle_matches(r.when, lead)), None)
    if rule is None:
        assert (decision.outcome, decision.rule, decision.reason) == ("unroutable", None, "no rule matched")
        return
    assert decision.rule == rule.name
    assert [c.partner_id for c in decision.candidates] == sorted(p.partner_id for p in partners)
    by_id = {p.partner_id: p for p in partners}
    for c in decision.candidates:
        assert c.eligible == oracle_eligible(by_id[c.partner_id], lead, rule, excluded)
        assert c.eligible == (c.reasons == ())
    if any(c.eligible for c in decision.candidates):
        assert decision.outcome == "routed" and decision.partner_id is not None
        assert oracle_eligible(by_id[decision.partner_id], lead, rule, excluded)
    else:
        assert (decision.outcome, decision.partner_id) == ("unroutable", None)


@given(
    lead=leads_st,
    partners=partners_st,
    rules=rule_sets(),
    changes=st.lists(st.tuples(st.sampled_from(PARTNER_IDS), st.booleans()), min_size=1, max_size=12),
)
def test_with_state_carried_over_picks_stay_eligible(
    lead: LeadFacts, partners: list[PartnerFacts], rules: RuleSetBody, changes: list[tuple[str, bool]]
) -> None:
    """Partners switch on and off between leads; whatever the stored state, the pick is eligible."""
    state: dict[str, dict[str, Any]] = {}
    current = {p.partner_id: p for p in partners}
    for partner_id, active in changes:
        if partner_id in current:
            current[partner_id] = replace(current[partner_id], active=active)
        decision = decide(lead, list(current.values()), rules, version=1, state=state)
        if decision.partner_id is not None:
            rule = next(r for r in rules.rules if r.name == decision.rule)
            assert oracle_eligible(current[decision.partner_id], lead, rule, set())
        if decision.state is not None and decision.rule is not None:
            state[decision.rule] = decision.state


@given(
    n=st.integers(1, 8),
    k=st.integers(1, 5),
    inactive=st.integers(0, 3),
    start=maybe(st.sampled_from(PARTNER_IDS)),
)
def test_round_robin_is_exactly_fair(n: int, k: int, inactive: int, start: str | None) -> None:
    partners = [make_partner(f"a{i}") for i in range(n)] + [
        make_partner(f"b{i}", active=False) for i in range(inactive)
    ]
    state: dict[str, dict[str, Any]] = {} if start is None else {"all": {"last": start}}
    picks: Counter[str | None] = Counter()
    for _ in range(n * k):
        decision = decide(make_lead(), partners, rule_set(), version=1, state=state)
        picks[decision.partner_id] += 1
        state = {"all": decision.state} if decision.state is not None else state
    assert picks == {f"a{i}": k for i in range(n)}


@given(tiers=st.lists(st.sampled_from(TIERS), min_size=1, max_size=6), cycles=st.integers(1, 4))
def test_weighted_shares_are_exact_over_whole_cycles(tiers: list[str], cycles: int) -> None:
    partners = [make_partner(f"p{i}", tier=t) for i, t in enumerate(tiers)]
    total = sum(WEIGHTS[t] for t in tiers)
    picks = Counter(
        d.partner_id for d in run(make_lead(), partners, rule_set(Rule(name="w", strategy="weighted")), total * cycles)
    )
    assert picks == {f"p{i}": WEIGHTS[t] * cycles for i, t in enumerate(tiers)}


@given(
    tiers=st.lists(st.sampled_from(TIERS), min_size=1, max_size=6),
    weights=st.fixed_dictionaries({t: st.floats(0.1, 10) for t in TIERS}),
)
def test_weighted_shares_follow_any_weights(tiers: list[str], weights: dict[str, float]) -> None:
    partners = [make_partner(f"p{i}", tier=t) for i, t in enumerate(tiers)]
    rules = rule_set(Rule(name="w", strategy="weighted"), tier_weights=weights)
    n = 300
    picks = Counter(d.partner_id for d in run(make_lead(), partners, rules, n))
    total = sum(weights[t] for t in tiers)
    for i, tier in enumerate(tiers):
        assert abs(picks[f"p{i}"] - n * weights[tier] / total) <= 2


@given(partners=partners_st.filter(lambda ps: any(p.active for p in ps)))
def test_least_loaded_picks_a_minimum(partners: list[PartnerFacts]) -> None:
    partners = [
        replace(p, territories=(Territory("US"),), products=(), industries=(), max_open_leads=None) for p in partners
    ]
    decision = decide(make_lead(), partners, rule_set(Rule(name="ll", strategy="least_loaded")), version=1, state={})
    active = [p.open_leads for p in partners if p.active]
    assert next(p for p in partners if p.partner_id == decision.partner_id).open_leads == min(active)


# --- examples ---


def test_round_robin_stays_fair_when_partners_come_and_go() -> None:
    a, b, c = make_partner("a"), make_partner("b"), make_partner("c")
    rules = rule_set()
    state: dict[str, dict[str, Any]] = {}
    picks = []
    for partners in ([a, b, c], [a, c], [a, c], [a, b, c], [a, b, c], [a, b, c]):
        decision = decide(make_lead(), partners, rules, version=1, state=state)
        picks.append(decision.partner_id)
        state = {"all": decision.state} if decision.state is not None else state
    assert picks == ["a", "c", "a", "b", "c", "a"]


def test_weighted_spreads_picks_and_drops_gone_partners() -> None:
    partners = [make_partner("p", tier="platinum"), make_partner("s", tier="silver")]
    rules = rule_set(Rule(name="w", strategy="weighted"))
    decisions = run(make_lead(), partners, rules, 6)
    assert [d.partner_id for d in decisions] == ["p", "s", "p", "p", "s", "p"]
    assert decisions[-1].state == {"current": {"p": 0.0, "s": 0.0}}
    state = {"w": {"current": {"p": 1.0, "s": 3.0, "gone": -4.0}}}  # re-centred to p=-1, s=1, then a tie
    assert decide(make_lead(), partners, rules, version=1, state=state).state == {"current": {"p": -3.0, "s": 3.0}}


def test_least_loaded_rotates_among_ties() -> None:
    partners = [
        make_partner("a", open_leads=2),
        make_partner("b", open_leads=1),
        make_partner("c", open_leads=1),
    ]
    decisions = run(make_lead(), partners, rule_set(Rule(name="ll", strategy="least_loaded")), 3)
    assert [d.partner_id for d in decisions] == ["b", "c", "b"]


TIER_PRIORS = {"acceptance": 120 / 200, "first_touch_sla": 105 / 200, "win": 45 / 100}  # good and poor pooled


def record(acceptance: tuple[int, int], first_touch: tuple[int, int], win: tuple[int, int]) -> Performance:
    return Performance(tallies={"acceptance": acceptance, "first_touch_sla": first_touch, "win": win},
                       priors=TIER_PRIORS, k=10)


def test_performance_sends_more_leads_to_the_better_partner_and_still_explores() -> None:
    rules = rule_set(Rule(name="perf", strategy="performance"))
    partners = [
        make_partner("good", performance=record((90, 100), (85, 100), (40, 50))),
        make_partner("poor", performance=record((30, 100), (20, 100), (5, 50))),
        make_partner("new", performance=Performance(priors=TIER_PRIORS, k=10)),  # no history: the tier's prior
    ]
    picks = Counter(decide(make_lead(lead_id=f"lead-{i}"), partners, rules, version=7, state={}).partner_id
                    for i in range(2000))
    assert picks["good"] > picks["new"] > picks["poor"]
    assert picks["good"] > 1800
    assert picks["new"] >= 40  # the newcomer is not starved: about 4% while it has no record
    assert picks["poor"] <= 2  # and a long poor record is not kept fed


def test_performance_is_replayable_and_explained() -> None:
    rules = rule_set(Rule(name="perf", strategy="performance"))
    partners = [make_partner("a", performance=record((3, 4), (1, 2), (1, 1))), make_partner("b")]
    first = decide(make_lead(lead_id="L1"), partners, rules, version=3, state={})
    assert decide(make_lead(lead_id="L1"), partners, rules, version=3, state={}) == first
    assert first.state is None
    assert {decide(make_lead(lead_id=f"L{i}"), partners, rules, version=3, state={}).partner_id
            for i in range(50)} == {"a", "b"}  # another lead, another draw
    explained = {c["partner_id"]: c["performance"] for c in first.explanation()["candidates"]}
    a = explained["a"]
    assert a["tallies"] == {"acceptance": [3, 4], "first_touch_sla": [1, 2], "win": [1, 1]}
    parts = {"acceptance": (3 + 10 * 0.6) / 14, "first_touch_sla": (1 + 10 * 0.525) / 12, "win": (1 + 10 * 0.45) / 11}
    assert a["score_parts"] == pytest.approx(parts)
    assert a["score"] == pytest.approx(0.3 * parts["acceptance"] + 0.3 * parts["first_touch_sla"] + 0.4 * parts["win"])
    assert a["evidence"] == pytest.approx(0.3 * 4 + 0.3 * 2 + 0.4 * 1)
    assert a["weight"] == pytest.approx(a["evidence"] / (a["evidence"] + 10))
    assert explained["b"]["score"] == pytest.approx(0.5) and explained["b"]["weight"] == 0
    assert first.partner_id == max(explained, key=lambda pid: explained[pid]["draw"])


def test_unchanged_state_is_not_returned() -> None:
    rules = rule_set()
    decision = decide(make_lead(), [make_partner("a")], rules, version=1, state={"all": {"last": "a"}})
    assert (decision.partner_id, decision.state) == ("a", None)


def test_malformed_state_is_ignored() -> None:
    partners = [make_partner("a"), make_partner("b")]
    state = {"all": {"last": 3, "current": {"a": "x", "b": float("nan")}}}
    for strategy in ("round_robin", "weighted", "least_loaded", "performance"):
        rules = rule_set(Rule(name="all", strategy=strategy))
        decision = decide(make_lead(), partners, rules, version=1, state=state)
        assert decision.partner_id == decide(make_lead(), partners, rules, version=1, state={}).partner_id
        if strategy != "performance":  # which one `performance` draws depends on the lead
            assert decision.partner_id == "a"


@pytest.mark.parametrize(("score", "reason"), [(None, "no score (min_score 50)"), (49, "score 49 below min_score 50")])
def test_leads_below_the_bar_are_nurtured(score: int | None, reason: str) -> None:
    rules = rule_set(qualification=Qualification(min_score=50))
    decision = decide(make_lead(score=score), [make_partner("a")], rules, version=3, state={})
    assert decision == Decision("nurturing", None, None, None, 3, reason, (), None)


def test_a_lead_at_the_bar_is_routed() -> None:
    rules = rule_set(qualification=Qualification(min_score=50))
    assert decide(make_lead(score=50), [make_partner("a")], rules, version=1, state={}).outcome == "routed"


def test_first_matching_rule_wins() -> None:
    rules = rule_set(
        Rule(name="germany", when=RuleWhen(country=["de"])),
        Rule(name="big-storage", when=RuleWhen(product=["STORAGE"], min_value=100000), strategy="least_loaded"),
        Rule(name="storage", when=RuleWhen(product=["storage"])),
        Rule(name="rest"),
    )
    partners = [make_partner("a")]
    assert decide(make_lead(), partners, rules, version=1, state={}).rule == "big-storage"
    assert decide(make_lead(estimated_value=None), partners, rules, version=1, state={}).rule == "storage"
    assert decide(make_lead(product=None), partners, rules, version=1, state={}).rule == "rest"


def test_no_matching_rule_is_unroutable() -> None:
    rules = rule_set(Rule(name="big", when=RuleWhen(min_employees=5000)))
    decision = decide(make_lead(), [make_partner("a")], rules, version=1, state={})
    assert (decision.outcome, decision.reason, decision.candidates) == ("unroutable", "no rule matched", ())


def test_every_partner_is_a_candidate_with_all_its_reasons() -> None:
    rules = rule_set(Rule(name="x", route_to=RouteTo(tiers=["platinum", "gold"], partner_ids=["ok"])))
    partners = [
        make_partner(
            "zz",
            tier="silver",
            active=False,
            territories=(Territory("US", regions=("TX",)),),
            products=("backup",),
            industries=("retail",),
            max_open_leads=50,
            open_leads=50,
        ),
        make_partner("ok"),
        make_partner("mm", territories=(Territory("US", postal_prefixes=("10",)), Territory("DE"))),
    ]
    decision = decide(make_lead(), partners, rules, version=2, state={}, excluded={"zz"})
    assert decision.partner_id == "ok"
    assert decision.reason == "round_robin among 1 eligible partner under rule 'x'"
    assert decision.explanation()["candidates"] == [
        {
            "partner_id": "mm",
            "eligible": False,
            "reasons": ["territory: does not cover US/CA/94107", "not in rule route_to partner_ids"],
        },
        {"partner_id": "ok", "eligible": True, "reasons": []},
        {
            "partner_id": "zz",
            "eligible": False,
            "reasons": [
                "inactive",
                "territory: does not cover US/CA/94107",
                "product: does not sell storage",
                "industry: does not serve healthcare",
                "capacity: 50 of 50 open leads",
                "already rejected or recalled for this lead",
                "not in rule route_to tiers [platinum, gold]",
                "not in rule route_to partner_ids",
            ],
        },
    ]


def test_no_eligible_partner_is_unroutable() -> None:
    partners = [make_partner(p, active=False) for p in "abc"]
    decision = decide(make_lead(), partners, rule_set(Rule(name="x")), version=1, state={})
    assert (decision.outcome, decision.partner_id, decision.rule) == ("unroutable", None, "x")
    assert decision.reason == "no eligible partner for rule 'x' (3 considered)"
    assert len(decision.candidates) == 3


def test_territory_matching() -> None:
    def outcome(lead: LeadFacts, partner: PartnerFacts) -> str:
        return decide(lead, [partner], rule_set(), version=1, state={}).outcome

    uk = make_partner("uk", territories=(Territory("GB", postal_prefixes=("sw1",)),))
    assert outcome(make_lead(country="GB", region=None, postal_code="SW1A 1AA"), uk) == "routed"
    assert outcome(make_lead(country="GB", postal_code="EC1A 1BB"), uk) == "unroutable"
    assert outcome(make_lead(country="GB", postal_code=None), uk) == "unroutable"
    west = make_partner("w", territories=(Territory("US", regions=("CA", "OR")),))
    assert outcome(make_lead(region="or"), west) == "routed"
    assert outcome(make_lead(region=None), west) == "unroutable"
    picky = make_partner("a", products=("backup",), industries=("retail",))
    assert outcome(make_lead(product=None, industry=None), picky) == "routed"


# --- schemas ---


def test_the_contract_example_parses() -> None:
    body = RuleSetBody.model_validate(
        {
            "qualification": {"min_score": 50},
            "rules": [
                {
                    "name": "enterprise-storage",
                    "when": {"product": ["storage"], "min_value": 100000},
                    "route_to": {"tiers": ["platinum", "gold"]},
                    "strategy": "weighted",
                },
                {"name": "everything-else", "when": {}, "strategy": "round_robin"},
            ],
            "tier_weights": {"platinum": 4, "gold": 3, "silver": 2, "registered": 1},
        }
    )
    assert [r.name for r in body.rules] == ["enterprise-storage", "everything-else"]
    read = RuleSetRead.model_validate({**body.model_dump(), "version": 2})
    assert (read.version, read.created_at) == (2, None)


def test_defaults() -> None:
    assert DEFAULT_RULE_SET.rules[0].strategy == "round_robin"
    assert DEFAULT_RULE_SET.tier_weights == WEIGHTS
    partial = RuleSetBody.model_validate({"rules": [{"name": "a"}], "tier_weights": {"gold": 7}})
    assert partial.tier_weights == {**WEIGHTS, "gold": 7}


@pytest.mark.parametrize(
    "body",
    [
        {"rules": []},
        {"rules": [{"name": "a"}, {"name": "a"}]},
        {"rules": [{"name": ""}]},
        {"rules": [{"name": "a", "strategy": "random"}]},
        {"rules": [{"name": "a"}], "extra": 1},
        {"rules": [{"name": "a", "wehn": {}}]},
        {"rules": [{"name": "a", "when": {"contry": ["US"]}}]},
        {"rules": [{"name": "a", "route_to": {"tier": ["gold"]}}]},
        {"rules": [{"name": "a", "route_to": {"tiers": ["diamond"]}}]},
        {"rules": [{"name": "a"}], "qualification": {"min_score": 50, "max_score": 90}},
        {"rules": [{"name": "a", "when": {"min_value": 10, "max_value": 5}}]},
        {"rules": [{"name": "a", "when": {"min_employees": 10, "max_employees": 5}}]},
        {"rules": [{"name": "a", "when": {"min_value": -1}}]},
        {"rules": [{"name": "a", "when": {"country": []}}]},
        {"rules": [{"name": "a"}], "tier_weights": {"gold": 0}},
        {"rules": [{"name": "a"}], "tier_weights": {"diamond": 1}},
        {"rules": [{"name": "a"}], "tier_weights": {"gold": float("inf")}},
    ],
)
def test_invalid_rule_sets_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RuleSetBody.model_validate(body)
