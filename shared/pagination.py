"""Opaque cursors for `{"items": [...], "next_cursor": ...}` lists."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_

from shared.errors import ValidationFailed

T = TypeVar("T")

LimitQuery = Annotated[int, Query(ge=1, le=500, description="Page size (max 500).")]
CursorQuery = Annotated[str | None, Query(description="Opaque cursor from a previous page's next_cursor.")]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[^\x00]+$",
                                      description="An id to filter by.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values)).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int, *, kinds: tuple[type, ...] | None = None) -> list[Any] | None:
    """The values `encode_cursor` was given, or 422 for anything else. `kinds` are the values' types, checked
    because a cursor is client input: a number where the query expects text must not reach the database
    (PostgreSQL refuses to compare them), nor may a NUL character in a string."""
    if cursor is None:
        return None
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        values = None
    if not isinstance(values, list) or len(values) != arity:
        raise invalid_cursor()
    if kinds is not None and not all(type(v) is k for v, k in zip(values, kinds, strict=True)):
        raise invalid_cursor()
    if any(isinstance(v, str) and "\x00" in v for v in values):
        raise invalid_cursor()
    return values


def invalid_cursor() -> ValidationFailed:
    return ValidationFailed("The cursor is not valid.", errors=[
        {"field": "cursor", "message": "not a cursor this list returned", "type": "value_error"}])


# Newest-first lists keyed by (a timestamp, a unique id): the cursor is the last row's pair.

def time_cursor(at: datetime, key: str) -> str:
    return encode_cursor([at.isoformat(), key])


def decode_time_cursor(cursor: str | None) -> tuple[datetime, str] | None:
    values = decode_cursor(cursor, 2, kinds=(str, str))
    if values is None:
        return None
    try:
        at = datetime.fromisoformat(values[0])
    except ValueError:
        raise invalid_cursor() from None
    if at.tzinfo is None:  # ours always carry the offset
        raise invalid_cursor()
    return at, values[1]


def newest_first(query: Select[Any], at: Any, key: Any, after: tuple[datetime, str] | None,
                 limit: int) -> Select[Any]:
    """`query` ordered by (at, key) descending, resuming after the cursor's row (keyset pagination)."""
    query = query.order_by(at.desc(), key.desc()).limit(limit)
    if after is not None:
        query = query.where(or_(at < after[0], and_(at == after[0], key < after[1])))
    return query
