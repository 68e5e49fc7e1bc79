from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Literal

import holidays
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
    field_validator,
    model_validator,
)

from shared.config import known_zone

Tier = Literal["platinum", "gold", "silver", "registered"]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
PARTNER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@lru_cache
def _holiday_countries() -> frozenset[str]:
    return frozenset(holidays.list_supported_countries())


def _upper_within(max_length: int) -> AfterValidator:
    """Upper-case, then check the length again: upper-casing can lengthen text (`ß` becomes `SS`), and
    what is stored must still fit what is read back."""
    def check(value: str) -> str:
        value = value.upper()
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters once upper-cased")
        return value
    return AfterValidator(check)


Region = Annotated[str, StringConstraints(min_length=1, max_length=10), _upper_within(10)]
PostalPrefix = Annotated[str, StringConstraints(min_length=1, max_length=12, strip_whitespace=True),
                         _upper_within(12)]


class Territory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    country: CountryCode
    regions: list[Region] | None = None
    postal_prefixes: list[PostalPrefix] | None = None


class Capacity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_open_leads: int | None = Field(default=None, ge=0, le=2**31 - 1)  # an INTEGER column


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1, max_length=7)
    start: str = "09:00"
    end: str = "17:00"

    @field_validator("days")
    @classmethod
    def _days(cls, days: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in days) or len(set(days)) != len(days):
            raise ValueError("days are distinct ISO weekdays, 1 (Monday) to 7 (Sunday)")
        return sorted(days)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("a time of day as HH:MM")
        return value

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


PeriodKind = Literal["month", "vendor_quarter", "partner_quarter", "mop"]
PERIOD_KINDS: tuple[str, ...] = ("month", "vendor_quarter", "partner_quarter", "mop")


class OperatingPeriods(BaseModel):
    """The Mutual Operating Periods agreed with the partner: the months (1-12) at which they begin."""

    model_config = ConfigDict(extra="forbid")

    start_months: list[int] = Field(min_length=1, max_length=12)

    @field_validator("start_months")
    @classmethod
    def _months(cls, months: list[int]) -> list[int]:
        if any(m < 1 or m > 12 for m in months) or len(set(months)) != len(months):
            raise ValueError("distinct months, 1 (January) to 12 (December)")
        return sorted(months)


class Objective(BaseModel):
    """The partner's own target for one figure per period of one kind."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["accepted", "won", "won_amount"]
    target: float = Field(gt=0, le=1e15, allow_inf_nan=False)
    per: PeriodKind


class PartnerUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    tier: Tier
    active: bool = True
    territories: list[Territory] = Field(default_factory=list)
    products: list[Label] = Field(default_factory=list)
    industries: list[Label] = Field(default_factory=list)
    capacity: Capacity = Field(default_factory=Capacity)
    timezone: str = "UTC"
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    holiday_country: CountryCode | None = None
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12)
    webhook_url: Annotated[AnyHttpUrl, UrlConstraints(max_length=2000)] | None = None
    operating_periods: OperatingPeriods | None = Field(
        default=None, description="Mutual Operating Periods; null: the partner's fiscal quarters.")
    objectives: list[Objective] = Field(default_factory=list, max_length=50)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    @field_validator("holiday_country")
    @classmethod
    def _holiday_country(cls, value: str | None) -> str | None:
        if value is not None and value not in _holiday_countries():
            raise ValueError(f"no public holiday calendar for {value!r}")
        return value


class PartnerRead(PartnerUpsert):
    model_config = ConfigDict(extra="ignore")

    partner_id: str
    open_leads: int = 0
    webhook_enabled: bool = Field(default=True, description=(
        "False once the webhook answered 410 Gone; setting `webhook_url` again turns it back on."))
    created_at: datetime
    updated_at: datetime


class ApiKeyCreated(BaseModel):
    key_id: str
    api_key: str = Field(description="Shown once; only a hash is stored.")
