"""Configured intake sources: which adapter reads a source's payloads and how its requests are verified."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from shared.models.base import Base, UTCDateTime, utcnow


class Source(Base):
    """One named source (`POST /v1/webhooks/{name}`). Secrets are never stored in the clear: an HMAC secret
    (which verification needs) is encrypted with `LEADROUTER_SECRET_KEY` (`secret_ciphertext`); a header token
    (which only needs comparing) is kept as its SHA-256 (`token_sha256`)."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    adapter: Mapped[str] = mapped_column(String(16))
    auth_type: Mapped[str] = mapped_column(String(32))
    auth_header: Mapped[str | None] = mapped_column(String(100), nullable=True)
    signature_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    secret_ciphertext: Mapped[str | None] = mapped_column(Text, nullable=True)
    token_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    field_map: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    default_campaign: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
