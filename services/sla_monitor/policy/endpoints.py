from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from services.sla_monitor.deps import AdminDep, SessionDep
from services.sla_monitor.policy import service
from services.sla_monitor.policy.schemas import POLICY_NAME_PATTERN, PolicyBody, PolicyRead
from shared.errors import BODY_PROBLEMS, problem_responses

router = APIRouter(prefix="/v1/sla/policies", tags=["SLA policies (admin)"], dependencies=[AdminDep],
                   responses=problem_responses(401, 422))

PolicyName = Annotated[str, Path(pattern=POLICY_NAME_PATTERN,
                                 description="`default`, or a partner id: that partner's own policy.")]


@router.put("/{name}", response_model=PolicyRead,
            responses={201: {"model": PolicyRead}, **problem_responses(*BODY_PROBLEMS)})
async def put_policy(name: PolicyName, body: PolicyBody, session: SessionDep, response: Response) -> PolicyRead:
    """Create (201) or replace (200) an SLA policy (admin). It applies to clocks opened from now on; clocks
    already running keep the due time they were opened with.

    Durations are ISO 8601 without years or months. Under `business_hours` the days and weeks of a
    duration count the partner's working days (`P1D` is due at the same local time on the next working
    day; `P1W` is a week's worth of working days) and hours, minutes and seconds count business time;
    under `calendar` all of it is plain elapsed time."""
    read, created = await service.put_policy(session, name, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return read


@router.get("/{name}", response_model=PolicyRead, responses=problem_responses(404))
async def get_policy(name: PolicyName, session: SessionDep) -> PolicyRead:
    """A stored policy (admin); `default` falls back to the built-in default (`builtin: true`) until one is stored."""
    return await service.get_policy(session, name)
