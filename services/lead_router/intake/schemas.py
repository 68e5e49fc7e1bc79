from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class NoNul(BaseModel):
    """PostgreSQL text cannot hold NUL: strings with one are bad input (422), not a failed insert (500)."""

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class CompanyIn(NoNul):
    model_config = ConfigDict(extra="ignore")

    name: Text
    domain: Text | None = None
    industry: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    employees: int | None = Field(default=None, ge=0)
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True)]
    region: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10,
                                             to_upper=True)] | None = None
    postal_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=12,
                                                  to_upper=True)] | None = None


class LeadIn(NoNul):
    """The `generic` webhook body. Unknown fields are ignored so automation tools can send extras."""

    model_config = ConfigDict(extra="ignore")

    external_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=EMAIL_PATTERN)]
    first_name: Text | None = None
    last_name: Text | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=40)] | None = None
    title: Text | None = None
    company: CompanyIn
    product: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    estimated_value: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    score: int | None = Field(default=None, ge=0, le=1000)
    campaign: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    occurred_at: AwareDatetime | None = None

    @field_validator("occurred_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """Stored in UTC: a time at the very edge of the calendar (year 1 at +01:00) has no UTC equivalent."""
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range") from None


class IntakeAccepted(BaseModel):
    lead_id: str
    status: Literal["received", "nurturing", "offered", "accepted", "working", "won", "lost", "no_decision",
                    "unroutable"]
    duplicate: bool
