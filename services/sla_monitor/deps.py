"""Request dependencies of the monitor: the per-request transaction and the admin token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import Settings
from shared.errors import Unauthorized
from shared.security import bearer, token_matches


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent, rolled back on any error."""
    async with request.app.state.sessions() as session, session.begin():
        yield session


def require_admin(request: Request) -> None:
    expected = request.app.state.settings.admin_token
    token = bearer(request.headers.get("authorization"))
    if not token or not expected or not token_matches(token, expected):
        raise Unauthorized("A valid admin bearer token is required.")


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
AdminDep = Depends(require_admin)
