from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.lead_router.deps import AdminDep, PartnerDep, SessionDep, SettingsDep
from services.lead_router.lead import service
from services.lead_router.lead.repository import LeadRepository
from services.lead_router.lead.schemas import (
    ActivityIn,
    ActivityRead,
    DispositionIn,
    LeadRead,
    RejectIn,
    StepResult,
    Timeline,
)
from services.lead_router.lead.states import STATUSES
from shared.errors import BODY_PROBLEMS, problem_responses
from shared.models import Lead
from shared.pagination import CursorQuery, IdQuery, LimitQuery, Page, decode_time_cursor, time_cursor

admin_router = APIRouter(prefix="/v1/leads", tags=["leads (admin)"], dependencies=[AdminDep],
                         responses=problem_responses(401, 422))
partner_router = APIRouter(prefix="/v1/partner/leads", tags=["partner"], responses=problem_responses(401, 422))

StatusQuery = Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")]


async def _page(session: SessionDep, *, status: str | None, partner_id: str | None, source: str | None,
                limit: int, cursor: str | None) -> tuple[list[Lead], str | None]:
    leads = await LeadRepository(session).page(status=status, partner_id=partner_id, source=source,
                                               after=decode_time_cursor(cursor), limit=limit)
    next_cursor = time_cursor(leads[-1].created_at, leads[-1].lead_id) if len(leads) == limit else None
    return leads, next_cursor


@admin_router.get("", response_model=Page[LeadRead])
async def list_leads(session: SessionDep, status: StatusQuery = None, partner_id: IdQuery = None,
                     source: IdQuery = None, limit: LimitQuery = 50, cursor: CursorQuery = None) -> Page[LeadRead]:
    """All leads, newest first, filtered by status, current partner or source."""
    leads, next_cursor = await _page(session, status=status, partner_id=partner_id, source=source, limit=limit,
                                     cursor=cursor)
    return Page(items=[service.to_read(lead) for lead in leads], next_cursor=next_cursor)


@admin_router.get("/{lead_id}", response_model=LeadRead, responses=problem_responses(404))
async def get_lead(lead_id: str, session: SessionDep) -> LeadRead:
    """One lead, contact included."""
    return service.to_read(await service.get_lead(session, lead_id))


@admin_router.get("/{lead_id}/timeline", response_model=Timeline, responses=problem_responses(404))
async def get_timeline(lead_id: str, session: SessionDep) -> Timeline:
    """Every event of the lead, oldest first. Routing entries hold the rule, strategy, rule-set version
    and every partner considered, eligible or not, and why."""
    return Timeline(items=await service.get_timeline(session, lead_id))


@partner_router.get("", response_model=Page[LeadRead])
async def my_leads(partner: PartnerDep, session: SessionDep, status: StatusQuery = None, limit: LimitQuery = 50,
                   cursor: CursorQuery = None) -> Page[LeadRead]:
    """The calling partner's own leads (offered to it or owned by it), newest first."""
    leads, next_cursor = await _page(session, status=status, partner_id=partner.partner_id, source=None,
                                     limit=limit, cursor=cursor)
    return Page(items=[service.for_partner(lead) for lead in leads], next_cursor=next_cursor)


@partner_router.get("/{lead_id}", response_model=LeadRead, responses=problem_responses(404))
async def my_lead(lead_id: str, partner: PartnerDep, session: SessionDep) -> LeadRead:
    """One of the partner's leads. Until it is accepted the contact's name, email and phone are null."""
    return service.for_partner(await service.partner_lead(session, partner, lead_id))


@partner_router.post("/{lead_id}/accept", response_model=StepResult, responses=problem_responses(404, 409))
async def accept(lead_id: str, partner: PartnerDep, session: SessionDep, settings: SettingsDep) -> StepResult:
    """Accept an offered lead. Accepting again answers the same; after a recall or reject, 409."""
    return await service.accept(session, partner, lead_id, settings=settings)


@partner_router.post("/{lead_id}/reject", response_model=StepResult,
                     responses=problem_responses(*BODY_PROBLEMS, 404, 409))
async def reject(lead_id: str, body: RejectIn, partner: PartnerDep, session: SessionDep,
                 settings: SettingsDep) -> StepResult:
    """Turn an offered lead down, with a reason; it is routed on to the next eligible partner."""
    return await service.reject(session, partner, lead_id, body, settings=settings)


@partner_router.post("/{lead_id}/activities", status_code=201, response_model=ActivityRead,
                     responses=problem_responses(*BODY_PROBLEMS, 404, 409))
async def add_activity(lead_id: str, body: ActivityIn, partner: PartnerDep, session: SessionDep,
                       settings: SettingsDep) -> ActivityRead:
    """Log a first touch or follow-up on an accepted lead. The first activity of any type counts as the
    first touch for the SLA."""
    return await service.add_activity(session, partner, lead_id, body, settings=settings)


@partner_router.post("/{lead_id}/disposition", response_model=StepResult,
                     responses=problem_responses(*BODY_PROBLEMS, 404, 409))
async def disposition(lead_id: str, body: DispositionIn, partner: PartnerDep, session: SessionDep,
                      settings: SettingsDep) -> StepResult:
    """Report the outcome: `working`, or the final `won` (with `amount`), `lost`, `no_decision`."""
    return await service.set_disposition(session, partner, lead_id, body, settings=settings)
