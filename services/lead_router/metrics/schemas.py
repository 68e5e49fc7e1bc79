from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ScoreParts(BaseModel):
    acceptance: float
    first_touch_sla: float
    win: float


class PartnerFigures(BaseModel):
    """What became of the offers made to one partner in a window (cohort by `offered_at`), and its score."""

    model_config = ConfigDict(populate_by_name=True)

    partner_id: str
    name: str
    rank: int = Field(description="1 is the highest score; ties by partner_id.")
    score: float = Field(description="0.3·acceptance + 0.3·first_touch_sla + 0.4·win, each part shrunk to the tier.")
    score_parts: ScoreParts
    tier: str
    offered: int = Field(description="accepted + rejected + recalled + pending")
    accepted: int
    rejected: int
    recalled: int
    pending: int = Field(description="Offers still waiting for an answer.")
    touched: int = Field(description="Accepted offers with a first touch logged (the funnel's third step).")
    rejected_by_reason: dict[str, int]
    acceptance_rate: float | None = Field(description="accepted / (accepted + rejected + recalled)")
    median_time_to_accept_s: float | None
    p90_time_to_accept_s: float | None
    median_time_to_first_touch_s: float | None
    accept_sla_met_rate: float | None
    first_touch_sla_met_rate: float | None
    won: int
    lost: int
    no_decision: int
    win_rate: float | None = Field(description="won / (won + lost + no_decision)")
    won_amount: float


class ObjectiveRead(BaseModel):
    metric: str
    per: str
    target: float
    actual: float
    attainment: float = Field(description="actual / target")


class PeriodFigures(PartnerFigures):
    period: str = Field(description="`2026-11`, `FY2027-Q3` or `MOP-2026-07`.")
    from_: datetime = Field(alias="from")
    to: datetime
    objectives: list[ObjectiveRead]


class TierMedian(BaseModel):
    """Nearest-rank medians of each rate over the partners of the tier (the caller included) that have it;
    null unless at least three partners have the rate, so no single peer's figure can be read off."""

    partners: int = Field(description="Partners in the tier.")
    acceptance_rate: float | None
    accept_sla_met_rate: float | None
    first_touch_sla_met_rate: float | None
    win_rate: float | None


class ScorecardPeriod(PeriodFigures):
    tier_median: TierMedian


class SourceFigures(BaseModel):
    """What became of the leads a source (and campaign) sent in a window (cohort by `created_at`)."""

    source: str
    campaign: str | None
    leads: int
    nurturing: int = Field(description="Of its leads, those in `nurturing` now.")
    routed: int = Field(description="Leads offered at least once.")
    unroutable: int = Field(description="Of its leads, those in `unroutable` now.")
    accepted: int = Field(description="Leads accepted by some partner.")
    rejected: int = Field(description="Rejections of its leads' offers.")
    reject_rate: float | None = Field(description="rejected / (accepted + rejected)")
    rejected_by_reason: dict[str, int]
    won: int
    lost: int
    no_decision: int
    win_rate: float | None = Field(description="won / (won + lost + no_decision)")
