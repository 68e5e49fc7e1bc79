"""The partner score: three rates, each shrunk toward the partner's tier, weighted into one number.

A part is `(successes + k·m) / (trials + k)`: the partner's own rate when it has many trials, its tier's
pooled rate `m` when it has none, and in between otherwise. `m` is the tier's pooled rate over the same
cohort (all partners' pooled rate when the tier has no trials, 0.5 when nobody has); `k` is
`LEADROUTER_SCORE_PRIOR_STRENGTH`. So two lucky leads do not outrank a long good record.

- acceptance: accepted of answered-or-recalled offers,
- first_touch_sla: first-touch clocks met on time of those that ended,
- win: won of closed (won, lost, no decision);

`score = 0.3·acceptance + 0.3·first_touch_sla + 0.4·win`; rank 1 is the highest score, ties by partner id.
The same numbers are a Beta posterior per part (`Beta(successes + k·m, failures + k·(1 − m))`, whose mean is
the shrunk rate), which the `performance` routing strategy samples from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PARTS = ("acceptance", "first_touch_sla", "win")
WEIGHTS: dict[str, float] = {"acceptance": 0.3, "first_touch_sla": 0.3, "win": 0.4}
NEUTRAL = 0.5


@dataclass(frozen=True)
class Tally:
    successes: int
    trials: int


@dataclass(frozen=True)
class Record:
    """A partner's tallies of the three parts over one cohort, and its tier."""

    tier: str
    tallies: Mapping[str, Tally]


@dataclass(frozen=True)
class Scored:
    score: float
    parts: dict[str, float]
    priors: dict[str, float]


def pooled(records: Mapping[str, Record]) -> dict[str, dict[str, float]]:
    """Per tier, per part, the prior `m`: the tier's pooled rate, else everyone's, else 0.5."""
    def rate(selected: list[Record], part: str) -> float | None:
        trials = sum(r.tallies[part].trials for r in selected)
        return sum(r.tallies[part].successes for r in selected) / trials if trials else None

    everyone = list(records.values())
    overall = {part: rate(everyone, part) for part in PARTS}
    out: dict[str, dict[str, float]] = {}
    for tier in {r.tier for r in everyone}:
        members = [r for r in everyone if r.tier == tier]
        out[tier] = {}
        for part in PARTS:
            tier_rate = rate(members, part)
            fallback = overall[part]
            out[tier][part] = tier_rate if tier_rate is not None else fallback if fallback is not None else NEUTRAL
    return out


def shrink(tally: Tally, prior: float, k: float) -> float:
    return (tally.successes + k * prior) / (tally.trials + k)


def score_all(records: Mapping[str, Record], k: float) -> dict[str, Scored]:
    priors = pooled(records)
    out = {}
    for partner_id, record in records.items():
        m = priors[record.tier]
        parts = {part: shrink(record.tallies[part], m[part], k) for part in PARTS}
        out[partner_id] = Scored(sum(WEIGHTS[p] * parts[p] for p in PARTS), parts, dict(m))
    return out


def ranks(scored: Mapping[str, Scored]) -> dict[str, int]:
    """1 for the highest score; equal scores are ordered by partner id."""
    order = sorted(scored, key=lambda pid: (-scored[pid].score, pid))
    return {pid: i + 1 for i, pid in enumerate(order)}
