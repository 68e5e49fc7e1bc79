"""Configured sources: stored with their secrets protected, and read on the intake hot path from a cache.

`SourceCache` keeps every configured source in memory, decrypted, and reads the table again when its copy
is older than `LEADROUTER_SOURCE_REFRESH_S`, or once a change committed through this process (seen at
once). A webhook therefore costs no query for its source's configuration.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from services.lead_router.source.repository import SourceRepository
from services.lead_router.source.schemas import HMAC_TYPES, SourceAuthRead, SourceRead, SourceUpsert
from services.lead_router.source.signatures import hash_token
from shared.config import Settings
from shared.crypto import SecretKeyMissing, SecretUnreadable, decrypt, encrypt
from shared.db import AtCommit
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.models import Source, utcnow

_generation = 0  # bumped by every commit that changed a source in this process


def _bump(_session: Session, _changes: list[Any]) -> None:
    global _generation
    _generation += 1


CHANGED = AtCommit("sources changed", _bump)  # a commit that changed a source moves `_generation`


@dataclass(frozen=True)
class SourceConfig:
    """What intake needs of a source, secrets decrypted (in memory only)."""

    name: str
    adapter: str
    auth_type: str
    secret: str | None = None          # HMAC secret (standard_webhooks, hubspot_v3, mautic)
    token_sha256: str | None = None    # header_token
    header: str | None = None
    signature_url: str | None = None
    field_map: dict[str, str] = field(default_factory=dict)
    default_campaign: str | None = None


def to_read(source: Source) -> SourceRead:
    return SourceRead(
        source=source.name, adapter=source.adapter,  # type: ignore[arg-type]
        auth=SourceAuthRead(type=source.auth_type, header=source.auth_header,  # type: ignore[arg-type]
                            signature_url=source.signature_url,
                            secret_set=bool(source.secret_ciphertext or source.token_sha256)),
        field_map=dict(source.field_map or {}), default_campaign=source.default_campaign,
        created_at=source.created_at, updated_at=source.updated_at)


def _secret_error(message: str) -> ValidationFailed:
    return ValidationFailed("The source is not valid; see errors.", errors=[
        {"field": "auth.secret", "message": message, "type": "value_error"}])


def _assign_auth(source: Source, body: SourceUpsert, settings: Settings) -> None:
    auth = body.auth
    keep = source.auth_type == auth.type and auth.secret is None  # a replace that leaves the secret as it was
    if auth.type != "none" and auth.secret is None and not keep:
        raise _secret_error(f"auth type `{auth.type}` needs a secret")
    if not keep:
        source.secret_ciphertext = source.token_sha256 = None
        if auth.type in HMAC_TYPES and auth.secret is not None:
            try:
                source.secret_ciphertext = encrypt(settings, auth.secret)
            except SecretKeyMissing:
                raise Conflict("Secrets are stored encrypted: set LEADROUTER_SECRET_KEY on lead_router first.") \
                    from None
        elif auth.type == "header_token" and auth.secret is not None:
            source.token_sha256 = hash_token(auth.secret)
    source.auth_type = auth.type
    source.auth_header = auth.header
    source.signature_url = auth.signature_url


async def upsert_source(session: AsyncSession, name: str, body: SourceUpsert, *,
                        settings: Settings) -> tuple[SourceRead, bool]:
    repo = SourceRepository(session)
    source = await repo.get(name, for_update=True)
    created = source is None
    now = utcnow()
    if source is None:
        source = Source(name=name, auth_type="", created_at=now)
    _assign_auth(source, body, settings)
    source.adapter = body.adapter
    source.field_map = dict(body.field_map)
    source.default_campaign = body.default_campaign
    source.updated_at = now
    if created:
        session.add(source)
    CHANGED.add(session)
    try:
        await session.flush()
    except IntegrityError:  # created concurrently: the caller may simply PUT again
        raise Conflict(f"Source {name!r} was created concurrently; send the request again.") from None
    return to_read(source), created


async def get_source(session: AsyncSession, name: str) -> SourceRead:
    source = await SourceRepository(session).get(name)
    if source is None:
        raise NotFound(f"No source {name!r}.")
    return to_read(source)


async def list_sources(session: AsyncSession, *, after: str | None, limit: int) -> list[SourceRead]:
    return [to_read(s) for s in await SourceRepository(session).page(after=after, limit=limit)]


def to_config(source: Source, settings: Settings) -> SourceConfig:
    secret = None
    if source.secret_ciphertext:
        try:
            secret = decrypt(settings, source.secret_ciphertext)
        except (SecretKeyMissing, SecretUnreadable):
            secret = None  # verification then fails closed: 401 for every request of this source
    return SourceConfig(name=source.name, adapter=source.adapter, auth_type=source.auth_type, secret=secret,
                        token_sha256=source.token_sha256, header=source.auth_header,
                        signature_url=source.signature_url, field_map=dict(source.field_map or {}),
                        default_campaign=source.default_campaign)


class SourceCache:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self.sessions = sessions
        self.settings = settings
        self._configs: dict[str, SourceConfig] = {}
        self._loaded_at = float("-inf")
        self._generation = -1
        self._lock = asyncio.Lock()

    def _stale(self) -> bool:
        return (self._generation != _generation
                or time.monotonic() - self._loaded_at > self.settings.source_refresh_s)

    async def get(self, name: str) -> SourceConfig | None:
        if self._stale():
            async with self._lock:  # one reload for every request that finds the copy stale
                if self._stale():
                    await self._load()
        return self._configs.get(name)

    async def _load(self) -> None:
        generation = _generation  # a change committed while reading is read again next time
        async with self.sessions() as session:
            rows = await SourceRepository(session).all()
        self._configs = {s.name: to_config(s, self.settings) for s in rows}
        self._loaded_at, self._generation = time.monotonic(), generation
