"""API schemas for the routing rule set (`PUT/GET /v1/routing/rules`), also the engine's input."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

Strategy = Literal["round_robin", "weighted", "least_loaded", "performance"]
Tier = Literal["platinum", "gold", "silver", "registered"]

DEFAULT_TIER_WEIGHTS: dict[Tier, float] = {"platinum": 4, "gold": 3, "silver": 2, "registered": 1}

NonEmptyStr = Annotated[str, Field(min_length=1)]
Values = Annotated[list[NonEmptyStr], Field(min_length=1)]


def _json_number(value: Any) -> Any:
    """Numbers as JSON has them: `true` is not a count, nor "5" an amount (pydantic's lax mode takes both);
    `3.0` is a count, as in the JSON Schema."""
    if isinstance(value, bool | str):
        raise ValueError("a number")
    return value


Number = BeforeValidator(_json_number)
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False), Number]
Count = Annotated[int, Field(ge=0), Number]
Weight = Annotated[float, Field(gt=0, allow_inf_nan=False), Number]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleWhen(_Strict):
    """Conditions on the lead; all given ones must hold. Lists are allowed values, bounds are inclusive."""

    country: Values | None = None
    region: Values | None = None
    product: Values | None = None
    industry: Values | None = None
    source: Values | None = None
    campaign: Values | None = None
    min_score: Count | None = None
    min_value: Amount | None = None
    max_value: Amount | None = None
    min_employees: Count | None = None
    max_employees: Count | None = None

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        for low, high in (("min_value", "max_value"), ("min_employees", "max_employees")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} ({lo}) must not exceed {high} ({hi})")
        return self


class RouteTo(_Strict):
    """Restricts a rule's candidates to these tiers and/or these partners."""

    tiers: Annotated[list[Tier], Field(min_length=1)] | None = None
    partner_ids: Values | None = None


class Rule(_Strict):
    name: str = Field(min_length=1, max_length=200)
    when: RuleWhen = RuleWhen()
    route_to: RouteTo | None = None
    strategy: Strategy = "round_robin"


class Qualification(_Strict):
    min_score: Count | None = None


class RuleSetBody(_Strict):
    qualification: Qualification = Qualification()
    rules: list[Rule] = Field(min_length=1)
    tier_weights: dict[Tier, Weight] = Field(default_factory=lambda: dict(DEFAULT_TIER_WEIGHTS))

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
        return rules

    @field_validator("tier_weights")
    @classmethod
    def _complete_weights(cls, weights: dict[Tier, float]) -> dict[Tier, float]:
        """Tiers left out keep their default weight, so every tier always has one."""
        return {**DEFAULT_TIER_WEIGHTS, **weights}


class RuleSetRead(RuleSetBody):
    version: int
    created_at: datetime | None = None


DEFAULT_RULE_SET = RuleSetBody(rules=[Rule(name="default", strategy="round_robin")])
