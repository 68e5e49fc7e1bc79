from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.lead_router.deps import AdminDep, SessionDep, SettingsDep
from services.lead_router.intake.schemas import LeadIn
from services.lead_router.routing import service
from services.lead_router.routing.schemas import RuleSetBody, RuleSetRead
from shared.errors import BODY_PROBLEMS, problem_responses

router = APIRouter(prefix="/v1/routing", tags=["routing (admin)"], dependencies=[AdminDep],
                   responses=problem_responses(401, 422))


class SimulateRequest(BaseModel):
    leads: list[LeadIn] = Field(min_length=1, max_length=1000)


class SimulateResponse(BaseModel):
    items: list[dict[str, Any]]


@router.put("/rules", response_model=RuleSetRead, responses=problem_responses(*BODY_PROBLEMS, 409))
async def put_rules(body: RuleSetBody, session: SessionDep) -> RuleSetRead:
    """Replace the active rule set. Returns it with its new `version`; earlier versions are kept, and
    every routing decision records the version it used."""
    return await service.put_rule_set(session, body)


@router.get("/rules", response_model=RuleSetRead)
async def get_rules(session: SessionDep) -> RuleSetRead:
    """The active rule set (version 0 is the built-in default: one round-robin rule, no qualification)."""
    return await service.active_rule_set(session)


@router.post("/simulate", response_model=SimulateResponse, responses=problem_responses(*BODY_PROBLEMS))
async def simulate(body: SimulateRequest, session: SessionDep, settings: SettingsDep) -> SimulateResponse:
    """Each lead's decision and explanation against the current partners and rules. Writes nothing."""
    return SimulateResponse(items=await service.simulate(session, body.leads, settings=settings))
