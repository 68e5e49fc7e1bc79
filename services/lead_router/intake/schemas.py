from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


def no_nul(value: object) -> object:
    """PostgreSQL text cannot hold NUL: reject it as bad input rather than fail on insert."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


class CompanyIn(BaseModel):
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


class LeadIn(BaseModel):
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

    _no_nul = field_validator("*")(no_nul)


class IntakeAccepted(BaseModel):
    lead_id: str
    status: Literal["received", "nurturing", "offered", "accepted", "working", "won", "lost", "no_decision",
                    "unroutable"]
    duplicate: bool
