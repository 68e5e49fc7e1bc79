"""API schemas of configured sources (`/v1/sources`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from shared.config import webhook_secret_problem

SOURCE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
AdapterName = Literal["generic", "hubspot", "mautic", "marketo", "form"]
AuthType = Literal["standard_webhooks", "hubspot_v3", "mautic", "header_token", "none"]
HMAC_TYPES = ("standard_webhooks", "hubspot_v3", "mautic")  # verification needs the secret itself: encrypted

# The lead fields a `field_map` may set (dotted paths into the generic lead body).
FIELD_TARGETS = ("external_id", "email", "first_name", "last_name", "phone", "title", "company.name",
                 "company.domain", "company.industry", "company.employees", "company.country", "company.region",
                 "company.postal_code", "product", "estimated_value", "score", "campaign", "occurred_at")

Secret = Annotated[str, StringConstraints(min_length=8, max_length=500, pattern=r"^[\x21-\x7e]+$")]
HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")]
PayloadPath = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f]+$")]


class SourceAuth(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AuthType
    secret: Secret | None = Field(default=None, description="Never returned. Omitted on a replace that keeps "
                                  "the auth type: the stored secret is kept.")
    header: HeaderName | None = Field(default=None, description="`header_token`: the header carrying the token.")
    signature_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$")] | None = Field(
        default=None, description="`hubspot_v3`: the public URL HubSpot signs, when a proxy sits in front.")

    @model_validator(mode="after")
    def _consistent(self) -> SourceAuth:
        if self.type == "none" and self.secret is not None:
            raise ValueError("auth type `none` takes no secret")
        if self.type == "header_token" and not self.header:
            raise ValueError("auth type `header_token` needs `header`")
        if self.type != "header_token" and self.header is not None:
            raise ValueError("`header` is only for auth type `header_token`")
        if self.type != "hubspot_v3" and self.signature_url is not None:
            raise ValueError("`signature_url` is only for auth type `hubspot_v3`")
        if self.type == "standard_webhooks" and self.secret is not None:
            problem = webhook_secret_problem(self.secret)
            if problem:
                raise ValueError(f"not a Standard Webhooks secret (whsec_<base64>): {problem}")
        return self


class SourceUpsert(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "adapter": "hubspot", "auth": {"type": "hubspot_v3", "secret": "your-hubspot-app-secret",
                                       "signature_url": "https://leads.example.com/v1/webhooks/hubspot-emea"},
        "field_map": {"company.country": "properties.country.value"}, "default_campaign": "emea-inbound"}})

    adapter: AdapterName
    auth: SourceAuth
    field_map: dict[str, PayloadPath] = Field(default_factory=dict, max_length=50, description=(
        "Lead field (dotted, e.g. `company.country`) → dotted path into the native payload."))
    default_campaign: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                       max_length=200)] | None = None

    @field_validator("field_map")
    @classmethod
    def _targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FIELD_TARGETS))
        if unknown:
            raise ValueError(f"unknown lead fields {unknown}; allowed: {', '.join(FIELD_TARGETS)}")
        return value


class SourceAuthRead(BaseModel):
    type: AuthType
    header: str | None = None
    signature_url: str | None = None
    secret_set: bool


class SourceRead(BaseModel):
    source: str
    adapter: AdapterName
    auth: SourceAuthRead
    field_map: dict[str, str]
    default_campaign: str | None
    created_at: datetime
    updated_at: datetime
