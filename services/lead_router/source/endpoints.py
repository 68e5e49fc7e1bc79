from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from services.lead_router.deps import AdminDep, SessionDep, SettingsDep
from services.lead_router.source import service
from services.lead_router.source.schemas import SOURCE_PATTERN, SourceRead, SourceUpsert
from shared.errors import problem_responses
from shared.pagination import CursorQuery, LimitQuery, Page, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/sources", tags=["sources (admin)"], dependencies=[AdminDep],
                   responses=problem_responses(401, 422))

SourceName = Annotated[str, Path(pattern=SOURCE_PATTERN, description="The name in `POST /v1/webhooks/{source}`.")]


@router.put("/{source}", response_model=SourceRead, responses={201: {"model": SourceRead},
                                                              **problem_responses(409)})
async def put_source(source: SourceName, body: SourceUpsert, session: SessionDep, settings: SettingsDep,
                     response: Response) -> SourceRead:
    """Create (201) or replace (200) a source: its adapter, how its requests are verified, its field map.
    The secret is never returned; a replace that keeps the auth type may omit it to keep the stored one."""
    read, created = await service.upsert_source(session, source, body, settings=settings)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return read


@router.get("", response_model=Page[SourceRead])
async def list_sources(session: SessionDep, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[SourceRead]:
    """Configured sources, ordered by name."""
    after = decode_cursor(cursor, 1, kinds=(str,))
    items = await service.list_sources(session, after=after[0] if after else None, limit=limit)
    return Page(items=items, next_cursor=encode_cursor([items[-1].source]) if len(items) == limit else None)


@router.get("/{source}", response_model=SourceRead, responses=problem_responses(404))
async def get_source(source: SourceName, session: SessionDep) -> SourceRead:
    """One configured source (secrets are never shown; `auth.secret_set` says one is stored)."""
    return await service.get_source(session, source)
