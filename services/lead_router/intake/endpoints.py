from __future__ import annotations

import hashlib
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response

from services.lead_router.intake.schemas import IntakeAccepted, IntakeBatchAccepted, IntakeItem, LeadIn, LeadPatch
from services.lead_router.intake.service import Entry, Patch
from services.lead_router.source.adapters import ADAPTERS, Batch, accepts, media_type, validate_leads
from services.lead_router.source.payload import decode_text
from services.lead_router.source.schemas import SOURCE_PATTERN
from services.lead_router.source.service import SourceConfig
from services.lead_router.source.signatures import (
    SignatureError,
    verify_header_token,
    verify_hubspot_v3,
    verify_mautic,
    verify_standard_webhooks,
)
from shared.config import Settings
from shared.errors import (
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
    problem_responses,
)

router = APIRouter(tags=["intake"])

WEBHOOK_ID_MAX = 200  # webhook_receipts.webhook_id

Source = Annotated[str, Path(pattern=SOURCE_PATTERN,
                             description="The sending system, e.g. `generic`, `hubspot`, `marketo`.")]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is over {limit // 1024} KiB.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The body is over {limit // 1024} KiB.")
    return bytes(body)


def _source_config(source: str, config: SourceConfig | None, settings: Settings) -> SourceConfig:
    """A configured source, or the generic body verified by `LEADROUTER_WEBHOOK_SECRET_<SOURCE>` when set."""
    if config is not None:
        return config
    secret = settings.webhook_secret(source)
    if secret is None and settings.unconfigured_sources == "reject":
        raise NotFound(f"No source {source!r} is configured here.")
    return SourceConfig(name=source, adapter="generic", auth_type="standard_webhooks" if secret else "none",
                        secret=secret)


def _authenticate(config: SourceConfig, body: bytes, request: Request) -> None:
    """The source's own check over the raw bytes (a correctly signed body that is not UTF-8 passes here and
    is a 400 next). Every failure, whatever the headers hold, is a 401 that stores nothing."""
    kind, headers = config.auth_type, request.headers
    try:
        if kind == "none":
            return
        if kind == "header_token":
            verify_header_token(config.token_sha256 or "", headers, header=config.header or "")
            return
        if config.secret is None:  # stored under a key no longer configured: nothing can verify
            raise SignatureError("The source's secret cannot be read; it must be set again.")
        if kind == "standard_webhooks":
            verify_standard_webhooks(config.secret, body, headers)
        elif kind == "hubspot_v3":
            verify_hubspot_v3(config.secret, body, headers, method=request.method,
                              url=config.signature_url or str(request.url))
        elif kind == "mautic":
            verify_mautic(config.secret, body, headers)
        else:  # pragma: no cover - the schema allows no other type
            raise SignatureError(f"Unknown auth type {kind!r}.")
    except SignatureError as exc:
        raise Unauthorized(f"Webhook signature verification failed: {exc}") from None


def _webhook_id(request: Request) -> str | None:
    webhook_id = request.headers.get("webhook-id") or None
    if webhook_id is not None and len(webhook_id) > WEBHOOK_ID_MAX:
        raise ValidationFailed("The webhook-id header is too long.", errors=[
            {"field": "webhook-id", "message": f"at most {WEBHOOK_ID_MAX} characters", "type": "string_too_long"}])
    return webhook_id


def _item_webhook_id(webhook_id: str | None, index: int) -> str | None:
    """Each lead of a several-lead payload is remembered under its own id derived from the request's."""
    if webhook_id is None:
        return None
    item_id = f"{webhook_id}#{index}"
    return item_id if len(item_id) <= WEBHOOK_ID_MAX else f"{hashlib.sha256(webhook_id.encode()).hexdigest()}#{index}"


def _entries(batch: Batch) -> list[Entry | None]:
    """The batch's leads and changes, validated all together (None: an item to answer `ignored`)."""
    entries: list[Entry | None] = []
    for item, valid in zip(batch.items, validate_leads(batch), strict=True):
        if isinstance(valid, LeadPatch):
            changes = valid.changes()
            entries.append(Patch(item.external_id or "", changes, valid.occurred_at) if changes else None)
        else:
            entries.append(valid)
    return entries


@router.post("/v1/webhooks/{source}", status_code=202, response_model=IntakeAccepted | IntakeBatchAccepted,
             responses={200: {"model": IntakeAccepted, "description": "Duplicate: the lead already exists."},
                        **problem_responses(400, 401, 404, 413, 415, 422)},
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": LeadIn.model_json_schema(
                     ref_template="#/components/schemas/{model}")}}}})
async def receive_lead(source: Source, request: Request) -> Response:
    """Receive leads from marketing automation.

    An unconfigured source takes the generic JSON body, verified by `LEADROUTER_WEBHOOK_SECRET_<SOURCE>`
    when that is set (with `LEADROUTER_UNCONFIGURED_SOURCES=reject`, the production setting, it is a 404).
    A source configured through `PUT /v1/sources/{source}` is read by its adapter (`hubspot`, `mautic`,
    `marketo`, `form`, `generic`) and verified its own way; the body documented here is the generic one (the
    `form` adapter takes `application/x-www-form-urlencoded` with the same names, dotted for nesting).

    202 once the leads and their `lead.received` events are durably stored; routing follows asynchronously.
    A lead already known (the same `(source, external_id)` or `webhook-id`, or an open lead with the same
    email from any source) is merged into that lead and answered with its `lead_id` and `"duplicate": true`
    (200 for a single lead). A payload with several leads answers `{"leads": [...]}`, all stored or none.
    """
    settings: Settings = request.app.state.settings  # the hot path: no dependency to solve
    config = _source_config(source, await request.app.state.sources.get(source), settings)
    adapter = ADAPTERS[config.adapter]
    media = media_type(request.headers.get("content-type"))
    if not accepts(adapter, media):
        raise UnsupportedMediaType(f"Source {source!r} takes {' or '.join(adapter.content_types)}, "
                                   f"not {media or 'a body without Content-Type'}.")
    body = await _read_body(request, settings.max_body_bytes)
    _authenticate(config, body, request)
    payload = adapter.parse(decode_text(body), media)
    webhook_id = _webhook_id(request)
    batch = adapter.batch(payload, field_map=config.field_map, default_campaign=config.default_campaign,
                          fallback_id=webhook_id)
    entries = _entries(batch)
    if not batch.multi and len(entries) == 1 and isinstance(entries[0], LeadIn):
        (item,) = await request.app.state.ingest_writer.submit(source, entries, [webhook_id])
        return Response(orjson.dumps({"lead_id": item.lead_id, "status": item.status, "duplicate": item.duplicate}),
                        status_code=200 if item.duplicate else 202, media_type="application/json")
    kept = [(i, e) for i, e in enumerate(entries) if e is not None]
    stored = iter(await request.app.state.ingest_writer.submit(
        source, [e for _, e in kept], [_item_webhook_id(webhook_id, i) for i, _ in kept]) if kept else [])
    items = [next(stored) if entry is not None else
             IntakeItem(external_id=item.external_id, lead_id=None, status="ignored", duplicate=False)
             for item, entry in zip(batch.items, entries, strict=True)]
    return Response(orjson.dumps({"leads": [i.model_dump() for i in items]}), status_code=202,
                    media_type="application/json")
