from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from services.lead_router.deps import AdminDep, SessionDep, SettingsDep
from services.lead_router.partner import service
from services.lead_router.partner.schemas import PARTNER_ID_PATTERN, ApiKeyCreated, PartnerRead, PartnerUpsert
from shared.errors import BODY_PROBLEMS, problem_responses
from shared.pagination import CursorQuery, LimitQuery, Page, decode_cursor, encode_cursor

router = APIRouter(prefix="/v1/partners", tags=["partners (admin)"], dependencies=[AdminDep],
                   responses=problem_responses(401, 422))

PartnerId = Annotated[str, Path(pattern=PARTNER_ID_PATTERN, description="Your id for the partner.")]


@router.put("/{partner_id}", response_model=PartnerRead,
            responses={201: {"model": PartnerRead}, **problem_responses(*BODY_PROBLEMS)})
async def put_partner(partner_id: PartnerId, body: PartnerUpsert, session: SessionDep, settings: SettingsDep,
                      response: Response) -> PartnerRead:
    """Create (201) or replace (200) a partner. Publishes `partner.upserted`."""
    read, created = await service.upsert_partner(session, partner_id, body, settings=settings)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return read


@router.get("", response_model=Page[PartnerRead])
async def list_partners(session: SessionDep, limit: LimitQuery = 50,
                        cursor: CursorQuery = None) -> Page[PartnerRead]:
    """All partners, ordered by id."""
    after = decode_cursor(cursor, 1, kinds=(str,))
    items = await service.list_partners(session, after=after[0] if after else None, limit=limit)
    next_cursor = encode_cursor([items[-1].partner_id]) if len(items) == limit else None
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{partner_id}", response_model=PartnerRead, responses=problem_responses(404))
async def get_partner(partner_id: PartnerId, session: SessionDep) -> PartnerRead:
    """One partner, with its count of open leads (offered, accepted or working)."""
    return await service.get_partner(session, partner_id)


@router.post("/{partner_id}/api-keys", status_code=201, response_model=ApiKeyCreated,
             responses=problem_responses(404))
async def create_api_key(partner_id: PartnerId, session: SessionDep) -> ApiKeyCreated:
    """A new API key for the partner. The key is shown once and stored only as a hash."""
    return await service.create_api_key(session, partner_id)


@router.delete("/{partner_id}/api-keys/{key_id}", status_code=204, responses=problem_responses(404))
async def revoke_api_key(partner_id: PartnerId, key_id: str, session: SessionDep) -> Response:
    """Revoke a key; calls with it get 401 from now on."""
    await service.revoke_api_key(session, partner_id, key_id)
    return Response(status_code=204)
