"""SLA policies: `default`, or one named by a partner id that then applies to that partner.

A policy is read when a clock opens and its due time is snapshotted on the clock, so storing a policy
changes the clocks opened after it, never the ones already running.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.sla_monitor.deadline import validate_duration
from services.sla_monitor.policy.schemas import BUILTIN_DEFAULT, DURATION_FIELDS, PolicyBody, PolicyRead
from services.sla_monitor.repository import batch_view
from shared.errors import NotFound, ValidationFailed
from shared.models import SlaPolicy, utcnow

DEFAULT = "default"


class PolicyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, name: str) -> SlaPolicy | None:
        if "\x00" in name:
            return None
        view = batch_view(self.session)  # a consumer batch read its policies up front
        if view is not None and name in view.policies:
            return view.policies[name]
        return await self.session.get(SlaPolicy, name)


def _read(row: SlaPolicy) -> PolicyRead:
    return PolicyRead(name=row.name, accept_within=row.accept_within, first_touch_within=row.first_touch_within,
                      report_back_every=row.report_back_every, clock=row.clock,  # type: ignore[arg-type]
                      on_accept_breach=row.on_accept_breach, updated_at=row.updated_at)  # type: ignore[arg-type]


def _builtin() -> PolicyRead:
    return PolicyRead(name=DEFAULT, builtin=True, **BUILTIN_DEFAULT.model_dump())


async def get_policy(session: AsyncSession, name: str) -> PolicyRead:
    row = await PolicyRepository(session).get(name)
    if row is not None:
        return _read(row)
    if name == DEFAULT:
        return _builtin()
    raise NotFound(f"No SLA policy {name!r}.")


async def put_policy(session: AsyncSession, name: str, body: PolicyBody) -> tuple[PolicyRead, bool]:
    """Create or replace; rules that need two fields at once (whole working days under business_hours)."""
    errors = []
    for field in DURATION_FIELDS:
        try:
            validate_duration(getattr(body, field), clock=body.clock)
        except ValueError as exc:
            errors.append({"field": field, "message": str(exc), "type": "value_error"})
    if errors:
        raise ValidationFailed("The policy is not valid; see errors.", errors=errors)
    repo = PolicyRepository(session)
    row = await repo.get(name)
    now = utcnow()
    created = row is None
    if row is None:
        row = SlaPolicy(name=name, created_at=now, updated_at=now, **body.model_dump())
        try:
            async with session.begin_nested():  # a concurrent PUT may create it first
                session.add(row)
                await session.flush()
            return _read(row), True
        except IntegrityError:
            row = await repo.get(name)
            if row is None:
                raise
            created = False
    for field, value in body.model_dump().items():
        setattr(row, field, value)
    row.updated_at = now
    await session.flush()
    return _read(row), created


async def effective_policy(session: AsyncSession, partner_id: str | None) -> PolicyRead:
    """The partner's own policy, else the stored `default`, else the built-in default."""
    repo = PolicyRepository(session)
    row = await repo.get(partner_id) if partner_id else None
    if row is None:
        row = await repo.get(DEFAULT)
    return _read(row) if row is not None else _builtin()
