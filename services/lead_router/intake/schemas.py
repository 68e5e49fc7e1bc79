from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
# The documented pattern means the same in JSON Schema (ECMA 262) as in Python; whitespace and control
# characters (which the two regex flavours' `\s` disagree on) are refused by `_email` (a value error).
EMAIL_PATTERN = r"^[^@]+@[^@]+\.[^@]+$"
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


_EMAIL = re.compile(EMAIL_PATTERN)


def _email(value: str) -> str:
    """The documented pattern, checked on the trimmed value (so `" dana@x.io "` is taken), with the same
    kind of error as the rest of the service's own rules: a `value_error`. As a pydantic `pattern` it failed
    as a schema error for values that match the documented pattern only before trimming (`"\t@x.io"`)."""
    if _SPACE_OR_CONTROL.search(value):
        raise ValueError("must not contain spaces or control characters")
    if not _EMAIL.match(value):
        raise ValueError(f"must look like an email address (pattern {EMAIL_PATTERN})")
    return value


def _not_bool(value: object) -> object:
    """JSON `true` is not the number 1 (pydantic's lax mode would take it as one)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


def _rfc3339_only(value: object) -> object:
    """A time is an RFC 3339 string: pydantic would also take a number as a Unix timestamp."""
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


class NoNul(BaseModel):
    """PostgreSQL text cannot hold NUL: strings with one are bad input (422), not a failed insert (500)."""

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


Name100 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Employees = Annotated[int, Field(ge=0), BeforeValidator(_not_bool)]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$", to_upper=True)]
Region = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10, to_upper=True)]
PostalCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=12, to_upper=True)]
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320), AfterValidator(_email),
                  Field(json_schema_extra={"pattern": EMAIL_PATTERN})]
Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=40)]
Money = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_not_bool)]
Score = Annotated[int, Field(ge=0, le=1000), BeforeValidator(_not_bool)]
Campaign = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CompanyIn(NoNul):
    model_config = ConfigDict(extra="ignore")

    name: Text
    domain: Text | None = None
    industry: Name100 | None = None
    employees: Employees | None = None
    country: Country
    region: Region | None = None
    postal_code: PostalCode | None = None


class LeadIn(NoNul):
    """The `generic` webhook body. Unknown fields are ignored so automation tools can send extras."""

    model_config = ConfigDict(extra="ignore")

    external_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    email: Email
    first_name: Text | None = None
    last_name: Text | None = None
    phone: Phone | None = None
    title: Text | None = None
    company: CompanyIn
    product: Name100 | None = None
    estimated_value: Money | None = None
    score: Score | None = None
    campaign: Campaign | None = None
    occurred_at: Time | None = None

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


class IntakeItem(BaseModel):
    """One lead of a payload that carries several. `lead_id` is null (status `ignored`) for an item that is
    not a lead we can store or update, e.g. a HubSpot `contact.creation` event (it carries only the contact
    id) or a property change of a contact we never received."""

    external_id: str | None
    lead_id: str | None
    status: Literal["received", "nurturing", "offered", "accepted", "working", "won", "lost", "no_decision",
                    "unroutable", "ignored"]
    duplicate: bool


class IntakeBatchAccepted(BaseModel):
    leads: list[IntakeItem]


class CompanyPatch(NoNul):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = None
    domain: Text | None = None
    industry: Name100 | None = None
    employees: Employees | None = None
    country: Country | None = None
    region: Region | None = None
    postal_code: PostalCode | None = None


class LeadPatch(NoNul):
    """Some fields of a known lead (e.g. a HubSpot property change), with the generic body's types."""

    model_config = ConfigDict(extra="forbid")

    email: Email | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    phone: Phone | None = None
    title: Text | None = None
    company: CompanyPatch | None = None
    product: Name100 | None = None
    estimated_value: Money | None = None
    score: Score | None = None
    campaign: Campaign | None = None
    occurred_at: Time | None = None

    def changes(self) -> dict[str, Any]:
        """The fields it sets, dotted (`company.country`), empty ones left out."""
        values = self.model_dump(mode="json", exclude_none=True, exclude={"company", "occurred_at"})
        if self.company is not None:
            company = self.company.model_dump(mode="json", exclude_none=True)
            values.update({f"company.{k}": v for k, v in company.items()})
        return values
