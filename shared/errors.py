"""One error hierarchy, rendered as RFC 9457 problem details."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class Unauthorized(AppError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"


class NotFound(AppError):
    status, title, type_slug = 404, "Not found", "not-found"


class Conflict(AppError):
    status, title, type_slug = 409, "Conflict", "conflict"


class TransitionNotAllowed(Conflict):
    title, type_slug = "Step not allowed in this state", "transition-not-allowed"


class ValidationFailed(AppError):
    status, title, type_slug = 422, "Validation failed", "validation-failed"


class PayloadTooLarge(AppError):
    status, title, type_slug = 413, "Payload too large", "payload-too-large"


class UnsupportedMediaType(AppError):
    status, title, type_slug = 415, "Unsupported media type", "unsupported-media-type"


class ServiceUnavailable(AppError):
    status, title, type_slug = 503, "Service unavailable", "service-unavailable"


def problem(status: int, title: str, detail: str, *, slug: str, errors: list[dict[str, Any]] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://leadrouter.dev/problems/{slug}", "title": title,
                            "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def field_errors(raw: list[Any]) -> list[dict[str, Any]]:
    out = []
    for err in raw:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid"),
                    "type": err.get("type", "invalid")})
    return out


# Declared on endpoints so /docs shows the problem responses.
PROBLEM_SCHEMA = {"content": {PROBLEM_JSON: {"schema": {"type": "object", "properties": {
    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
    "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}}}}


# Besides its own problems, every endpoint that takes a body answers 400 to one that is not JSON and 413 to one
# over its limit (`shared.limits.BodyGuard`).
BODY_PROBLEMS = (400, 413)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": "Problem details", **PROBLEM_SCHEMA} for code in codes}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_: Request, exc: AppError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(exc.status, exc.title, exc.detail, slug=exc.type_slug, errors=exc.errors,
                       headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = field_errors(list(exc.errors()))
        return problem(422, "Validation failed", "The request is not valid; see errors.",
                       slug="validation-failed", errors=errors)

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(PoolTimeout)
    @app.exception_handler(ConnectionRefusedError)
    async def _database_down(_: Request, exc: Exception) -> JSONResponse:
        # The database is unreachable or overloaded: nothing was stored; the sender should retry.
        return problem(503, "Service unavailable", "The database is unavailable; nothing was stored. Retry later.",
                       slug="database-unavailable", headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: a problem document with an id that is also in the log, never a stack trace.
        error_id = uuid.uuid4().hex
        log.error("unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
        return problem(500, "Internal server error",
                       f"Something went wrong on our side; nothing was stored. Error id {error_id}.",
                       slug="internal-error", headers={"X-Error-Id": error_id})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers = {**(headers or {}), "Allow": allowed}
        return problem(exc.status_code, str(exc.detail), str(exc.detail), slug=slug, headers=headers)


HTTP_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method served at the request's path. Starlette's own 405 names only the methods of the first
    route that matched the path, although `PUT` and `GET` of one resource are separate routes."""
    routes: list[BaseRoute] = request.app.router.routes
    return ", ".join(method for method in HTTP_METHODS
                     if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes))
