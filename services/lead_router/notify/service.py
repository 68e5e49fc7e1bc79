"""Partner notifications: what is sent (a CloudEvent without the contact), when it is staged (in the
transaction of the offer or recall itself, so it is never lost nor sent for a change that rolled back), the
signing secret, and the admin's delivery log.

The delivery worker (worker.py) sends what is staged here."""

from __future__ import annotations

import base64
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lead_router.notify.repository import DELIVERED, DISABLED, FAILED, PENDING, DeliveryRepository
from services.lead_router.notify.schemas import DeliveryRead, WebhookSecretCreated
from shared.config import Settings
from shared.crypto import SecretKeyMissing, decrypt, encrypt
from shared.errors import Conflict, NotFound
from shared.events import ROUTER_SOURCE, new_event
from shared.models import Lead, Partner, WebhookDelivery
from shared.pagination import time_cursor
from shared.wakeup import CommitSignal

log = logging.getLogger(__name__)

OFFERED = "lead.offered"
RECALLED = "lead.recalled"
# What a partner may learn of the company before accepting; never the contact (name, email, phone, title).
COMPANY_FIELDS = ("name", "domain", "industry", "employees", "country", "region", "postal_code")


def lead_data(lead: Lead, name: str, at: datetime) -> dict[str, Any]:
    company = lead.company or {}
    when = "offered_at" if name == OFFERED else "recalled_at"
    return {"lead_id": lead.lead_id, "company": {k: company[k] for k in COMPANY_FIELDS if k in company},
            "industry": company.get("industry"), "region": company.get("region"), "product": lead.product,
            "estimated_value": lead.estimated_value, "score": lead.score, when: at.astimezone(UTC).isoformat()}


DELIVERY_STAGED = CommitSignal("deliveries")


@dataclass(frozen=True)
class Webhook:
    """What staging a notification needs to know of a partner's webhook."""

    url: bool  # it has one
    enabled: bool  # not switched off (it answered 410 Gone)


def webhook_of(partner: Partner) -> Webhook:
    return Webhook(url=bool(partner.webhook_url), enabled=partner.webhook_enabled is not False)


def _stage(session: AsyncSession, settings: Settings, webhook: Webhook | None, *, partner_id: str, lead: Lead,
           name: str, at: datetime) -> WebhookDelivery | None:
    if webhook is not None and not webhook.url:
        return None
    # A partner whose webhook is off still gets its log entry, `disabled`, which the admin can retry later.
    enabled = webhook is None or webhook.enabled
    delivery_id = str(uuid.uuid4())
    event = new_event(name, source=ROUTER_SOURCE, subject=lead.lead_id, data=lead_data(lead, name, at), at=at,
                      event_id=delivery_id)
    delivery = WebhookDelivery(
        delivery_id=delivery_id, partner_id=partner_id, lead_id=lead.lead_id, type=event.type,
        status=PENDING if enabled else DISABLED, payload=event.model_dump(mode="json", exclude_none=True),
        attempts=0, next_attempt_at=at if enabled else None, created_at=at,
        last_error=None if enabled else "the partner's webhook is off (it answered 410 Gone)",
        give_up_at=at + timedelta(seconds=settings.delivery_give_up_s))
    session.add(delivery)
    if enabled:
        DELIVERY_STAGED.mark(session)  # this process's worker sends it as soon as the transaction commits
    return delivery


def stage_offer(session: AsyncSession, *, settings: Settings, partner_id: str, webhook: Webhook | None, lead: Lead,
                at: datetime) -> WebhookDelivery | None:
    """Stage `leadrouter.lead.offered` in the routing transaction, if the partner has a webhook.

    Routing knows every partner's `webhook` (`route_leads`), so no query is needed (this runs in the
    synchronous `_apply`). Not known (None): the delivery is staged anyway and the worker looks at the
    partner when it sends (no URL: `disabled`, nothing sent)."""
    return _stage(session, settings, webhook, partner_id=partner_id, lead=lead, name=OFFERED, at=at)


async def stage_recall(session: AsyncSession, *, settings: Settings, partner_id: str, lead: Lead,
                       at: datetime) -> WebhookDelivery | None:
    """Stage `leadrouter.lead.recalled` for the partner the lead was taken back from, if it has a webhook."""
    partner = await session.get(Partner, partner_id)
    if partner is None:
        return None
    return _stage(session, settings, webhook_of(partner), partner_id=partner_id, lead=lead, name=RECALLED, at=at)


SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


async def create_webhook_secret(session: AsyncSession, partner_id: str, *, settings: Settings) -> WebhookSecretCreated:
    """A new signing secret, replacing the old one: from the commit on, only the new one signs. It is stored
    encrypted with `LEADROUTER_SECRET_KEY` (as the sources' secrets are) and shown only here."""
    partner = await session.get(Partner, partner_id, with_for_update=True)
    if partner is None:
        raise NotFound(f"No partner {partner_id!r}.")
    secret = new_secret()
    try:
        partner.webhook_secret = encrypt(settings, secret)
    except SecretKeyMissing:
        raise Conflict("Secrets are stored encrypted: set LEADROUTER_SECRET_KEY on lead_router first.") from None
    await session.flush()
    return WebhookSecretCreated(secret=secret)


def signing_secret(settings: Settings, stored: str | None) -> str | None:
    """The partner's signing secret in clear (None: it has none). Raises `SecretUnreadable` when it was
    encrypted with a key no longer configured. One stored before secrets were encrypted (`whsec_…` as it is)
    is used as it is until `encrypt_stored_secrets` (the router worker, at start) encrypts it."""
    if not stored:
        return None
    return stored if stored.startswith(SECRET_PREFIX) else decrypt(settings, stored)


async def encrypt_stored_secrets(sessions: async_sessionmaker[AsyncSession], *, settings: Settings) -> int:
    """Encrypt the signing secrets an earlier version stored in clear (`whsec_…`), now that a key is set; the
    number encrypted. The router worker runs it at start and hourly (no migration could: it has no key)."""
    async with sessions() as session, session.begin():
        partners = (await session.scalars(select(Partner).where(
            Partner.webhook_secret.startswith(SECRET_PREFIX, autoescape=True)).with_for_update())).all()
        for partner in partners:
            partner.webhook_secret = encrypt(settings, partner.webhook_secret or "")
    if partners:
        log.info("encrypted %d partner signing secret(s) stored in clear", len(partners))
    return len(partners)


def to_read(delivery: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(delivery_id=delivery.delivery_id, type=delivery.type, lead_id=delivery.lead_id,
                        status=delivery.status,  # type: ignore[arg-type]
                        attempts=delivery.attempts, last_status_code=delivery.last_status_code,
                        last_error=delivery.last_error,
                        next_attempt_at=delivery.next_attempt_at if delivery.status == PENDING else None,
                        delivered_at=delivery.delivered_at)


async def _partner_exists(session: AsyncSession, partner_id: str) -> None:
    if await session.get(Partner, partner_id) is None:
        raise NotFound(f"No partner {partner_id!r}.")


async def list_deliveries(session: AsyncSession, partner_id: str, *, after: tuple[datetime, str] | None,
                          limit: int) -> tuple[list[DeliveryRead], str | None]:
    await _partner_exists(session, partner_id)
    rows = await DeliveryRepository(session).page(partner_id, after=after, limit=limit)
    next_cursor = time_cursor(rows[-1].created_at, rows[-1].delivery_id) if len(rows) == limit else None
    return [to_read(row) for row in rows], next_cursor


async def retry_delivery(session: AsyncSession, partner_id: str, delivery_id: str, *,
                         settings: Settings, now: datetime) -> DeliveryRead:
    """Send a `failed` or `disabled` delivery again: pending, due now, with a fresh 24-hour window."""
    await _partner_exists(session, partner_id)
    delivery = None if "\x00" in delivery_id else await DeliveryRepository(session).get(partner_id, delivery_id,
                                                                                        lock=True)
    if delivery is None:
        raise NotFound(f"No delivery {delivery_id!r} for partner {partner_id!r}.")
    if delivery.status not in (FAILED, DISABLED):
        raise Conflict(f"The delivery is {delivery.status}; only a failed or disabled one can be retried.")
    delivery.status, delivery.next_attempt_at, delivery.claim_token = PENDING, now, None
    delivery.give_up_at = now + timedelta(seconds=settings.delivery_give_up_s)
    await session.flush()
    return to_read(delivery)


__all__ = ["DELIVERED", "OFFERED", "RECALLED", "create_webhook_secret", "list_deliveries", "retry_delivery",
           "signing_secret",
           "stage_offer", "stage_recall"]
