"""Request dependencies: the per-request transaction (the only place HTTP commits) and credentials."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.errors import Unauthorized
from shared.models import Partner, PartnerApiKey
from shared.security import bearer, secret_matches, split_api_key, token_matches

KEY_ID = re.compile(r"[0-9a-f]{1,32}")


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent, rolled back on any error."""
    async with request.app.state.sessions() as session, session.begin():
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def require_admin(request: Request) -> None:
    expected = request.app.state.settings.admin_token
    token = bearer(request.headers.get("authorization"))
    if not token or not expected or not token_matches(token, expected):
        raise Unauthorized("A valid admin bearer token is required.")


async def current_partner(request: Request, session: SessionDep) -> Partner:
    token = bearer(request.headers.get("authorization"))
    parsed = split_api_key(token) if token else None
    if parsed is None:
        raise Unauthorized("A valid partner API key is required.")
    key_id, secret = parsed
    if not KEY_ID.fullmatch(key_id):  # never send arbitrary header bytes to the database
        raise Unauthorized("A valid partner API key is required.")
    key = await session.get(PartnerApiKey, key_id)
    if key is None or key.revoked_at is not None or not secret_matches(secret, key.secret_hash):
        raise Unauthorized("A valid partner API key is required.")
    partner = await session.scalar(select(Partner).where(Partner.partner_id == key.partner_id))
    if partner is None or not partner.active:  # a deactivated partner's keys open nothing
        raise Unauthorized("A valid partner API key is required.")
    return partner


AdminDep = Depends(require_admin)
PartnerDep = Annotated[Partner, Depends(current_partner)]
