from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request, Response
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.lead_router.intake.schemas import IntakeAccepted, LeadIn
from shared.config import Settings
from shared.errors import (
    AppError,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
    field_errors,
    problem_responses,
)

router = APIRouter(tags=["intake"])

WEBHOOK_ID_MAX = 200  # webhook_receipts.webhook_id

Source = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$",
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


def _verify(secret: str, body: bytes, request: Request) -> None:
    """Standard Webhooks check. Only the signature is checked here (`json_parse=False`): a signed body that
    is not JSON is a 400 later. Malformed headers (a signature without `v1,`, bad base64, a timestamp that
    is not a number) and a body that is not UTF-8 cannot verify: 401."""
    headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    webhook = Webhook(secret)  # a malformed configured secret is our bug, not the sender's: let it raise
    try:
        webhook.verify(body.decode("utf-8", errors="replace"), headers, json_parse=False)
    except WebhookVerificationError as exc:
        raise Unauthorized(f"Webhook signature verification failed: {exc}.") from None
    except ValueError:  # "v1" without a comma, bad base64
        raise Unauthorized("Webhook signature verification failed: malformed webhook-signature.") from None


@router.post("/v1/webhooks/{source}", status_code=202, response_model=IntakeAccepted,
             responses={200: {"model": IntakeAccepted, "description": "Duplicate: the lead already exists."},
                        **problem_responses(400, 401, 404, 413, 422)},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": LeadIn.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
async def receive_lead(source: Source, request: Request) -> Response:
    """Receive one lead from marketing automation.

    202 once the lead and its `lead.received` event are durably stored; routing follows asynchronously.
    A repeat of the same `(source, external_id)` or `webhook-id` answers 200 with the same `lead_id` and
    `"duplicate": true`. When `LEADROUTER_WEBHOOK_SECRET_<SOURCE>` is set, a valid Standard Webhooks
    signature is required (five minutes of tolerance). With `LEADROUTER_UNCONFIGURED_SOURCES=reject` (the
    production setting) a source without a secret answers 404 and stores nothing.
    """
    settings: Settings = request.app.state.settings  # the hot path: no dependency to solve
    secret = settings.webhook_secret(source)
    if secret is None and settings.unconfigured_sources == "reject":
        raise NotFound(f"No source {source!r} is configured here.")
    body = await _read_body(request, settings.max_body_bytes)
    if secret:
        _verify(secret, body, request)
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AppError("The body is not valid JSON.") from None
    try:
        lead_in = LeadIn.model_validate(raw)
    except ValidationError as exc:
        raise ValidationFailed("The lead is not valid; see errors.",
                               errors=field_errors(list(exc.errors()))) from None
    webhook_id = request.headers.get("webhook-id") or None
    if webhook_id is not None and len(webhook_id) > WEBHOOK_ID_MAX:
        raise ValidationFailed("The webhook-id header is too long.", errors=[
            {"field": "webhook-id", "message": f"at most {WEBHOOK_ID_MAX} characters", "type": "string_too_long"}])
    result: IntakeAccepted = await request.app.state.ingest_writer.submit(source, lead_in, webhook_id)
    return Response(orjson.dumps(result.model_dump()), status_code=200 if result.duplicate else 202,
                    media_type="application/json")
