from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.lead_router.deps import AdminDep, SessionDep, SettingsDep
from services.lead_router.notify import service
from services.lead_router.notify.schemas import DeliveryRead, WebhookSecretCreated
from services.lead_router.partner.schemas import PARTNER_ID_PATTERN
from shared.errors import problem_responses
from shared.models import utcnow
from shared.pagination import CursorQuery, LimitQuery, Page, decode_time_cursor

router = APIRouter(prefix="/v1/partners", tags=["partner notifications (admin)"], dependencies=[AdminDep],
                   responses=problem_responses(401, 422))

PartnerId = Annotated[str, Path(pattern=PARTNER_ID_PATTERN, description="Your id for the partner.")]


@router.post("/{partner_id}/webhook-secret", status_code=201, response_model=WebhookSecretCreated,
             responses=problem_responses(404, 409))
async def create_webhook_secret(partner_id: PartnerId, session: SessionDep, settings: SettingsDep
                                ) -> WebhookSecretCreated:
    """A new Standard Webhooks signing secret for the partner's notifications, shown once. It replaces the
    previous one: from now on only the new secret signs. Until a partner has one, its notifications wait
    (each try is logged with the reason) and go out once it is made."""
    return await service.create_webhook_secret(session, partner_id, settings=settings)


@router.get("/{partner_id}/deliveries", response_model=Page[DeliveryRead], responses=problem_responses(404))
async def list_deliveries(partner_id: PartnerId, session: SessionDep, limit: LimitQuery = 50,
                          cursor: CursorQuery = None) -> Page[DeliveryRead]:
    """The partner's notifications (`leadrouter.lead.offered`, `leadrouter.lead.recalled`), newest first,
    with how their delivery went."""
    items, next_cursor = await service.list_deliveries(session, partner_id, after=decode_time_cursor(cursor),
                                                       limit=limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post("/{partner_id}/deliveries/{delivery_id}/retry", response_model=DeliveryRead,
             responses=problem_responses(404, 409))
async def retry_delivery(partner_id: PartnerId, delivery_id: str, session: SessionDep,
                         settings: SettingsDep) -> DeliveryRead:
    """Send a `failed` or `disabled` notification again (it becomes `pending`, due now, retried for another
    24 hours). 409 for one that is pending or delivered. A partner whose webhook is off must have its
    `webhook_url` set again first, or the delivery is `disabled` again without being sent."""
    return await service.retry_delivery(session, partner_id, delivery_id, settings=settings, now=utcnow())
