"""Reading a webhook body: bytes → text → JSON or form fields, every failure a clean 400.

Nothing here trusts the sender: an empty body, a byte-order mark, invalid UTF-8, JSON that orjson refuses
(trailing garbage, `NaN`, a number too large for a double), numbers with absurdly many digits, nesting
deeper than `MAX_DEPTH` and malformed or oversized forms all raise `BadPayload`, never anything else.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shared.errors import AppError

MAX_DEPTH = 32          # arrays/objects in JSON, dotted segments in form keys
MAX_FORM_FIELDS = 1000
MAX_NUMBER_DIGITS = 64  # a longer number literal is not data a lead carries

_BOM = b"\xef\xbb\xbf"
# Characters a number literal is made of, all turned into "0": a literal with too many digits then shows as
# a run of zeros, found by a plain substring search (much cheaper than a regex over every body).
_NUMBER_CHARS = bytes.maketrans(b"0123456789.eE+-", b"0" * 15)
_LONG_RUN = b"0" * (MAX_NUMBER_DIGITS + 1)
# Strings are matched first so that digits inside them are skipped; what remains are number literals.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9][0-9.eE+-]*')


class BadPayload(AppError):
    status, title, type_slug = 400, "Bad request", "bad-payload"


def decode_text(body: bytes) -> str:
    """The body as text: UTF-8 without a byte-order mark, and not blank."""
    if not body.strip():
        raise BadPayload("The body is empty.")
    if body.startswith(_BOM):
        raise BadPayload("The body starts with a UTF-8 byte-order mark; send UTF-8 without one.")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadPayload("The body is not valid UTF-8.") from None


def parse_json(text: str) -> Any:
    """Strict JSON: one document, finite numbers of at most `MAX_NUMBER_DIGITS` digits, depth ≤ `MAX_DEPTH`.

    orjson already refuses `NaN`/`Infinity`, trailing content and numbers beyond a double (`1e400`,
    `10**5000`: "number is infinity"); it silently turns an integer beyond 64 bits into a float, so number
    literals are also checked for length (only when the text has a long run of number characters at all).
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadPayload(f"The body is not valid JSON: {exc.msg}.") from None
    if _LONG_RUN in text.encode("utf-8", "surrogatepass").translate(_NUMBER_CHARS):
        _check_number_lengths(text)
    # Depth cannot exceed the number of opening brackets: most bodies skip the walk entirely.
    if text.count("[") + text.count("{") > MAX_DEPTH:
        _check_depth(value)
    return value


def _check_number_lengths(text: str) -> None:
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] != '"' and sum(ch.isdigit() for ch in token) > MAX_NUMBER_DIGITS:
            raise BadPayload(f"The body has a number with more than {MAX_NUMBER_DIGITS} digits.")


def _check_depth(value: Any) -> None:
    """Iterative, so a hostile document cannot exhaust the stack; stops at the first container too deep."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_DEPTH:
            raise BadPayload(f"The body is nested deeper than {MAX_DEPTH} levels.")
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def parse_form(text: str) -> dict[str, Any]:
    """`application/x-www-form-urlencoded` into a nested dict: `company.name=X` → `{"company": {"name": "X"}}`.

    Blank values are kept (`a=` → `""`); a repeated key keeps its last value; a pair without `=`, an empty
    pair, percent-escapes that are not UTF-8, more than `MAX_FORM_FIELDS` fields, an empty key segment
    (`a..b`), more than `MAX_DEPTH` segments, and a key that is both a value and a parent (`a=1&a.b=2`)
    are all `BadPayload`.
    """
    try:
        pairs = parse_qsl(text.strip(), keep_blank_values=True, strict_parsing=True, encoding="utf-8",
                          errors="strict", max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        if "Max number of fields" in str(exc):
            raise BadPayload(f"The form has more than {MAX_FORM_FIELDS} fields.") from None
        if isinstance(exc, UnicodeDecodeError):
            raise BadPayload("The form has percent-escapes that are not UTF-8.") from None
        raise BadPayload("The body is not a valid URL-encoded form (every field must be `name=value`).") from None
    out: dict[str, Any] = {}
    for key, value in pairs:
        segments = key.split(".")
        if len(segments) > MAX_DEPTH:
            raise BadPayload(f"The form field {key[:100]!r} is nested deeper than {MAX_DEPTH} levels.")
        if any(not segment for segment in segments):
            raise BadPayload(f"The form field name {key[:100]!r} has an empty segment.")
        node = out
        for i, segment in enumerate(segments[:-1]):
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                parent = ".".join(segments[:i + 1])
                raise BadPayload(f"The form field {parent[:100]!r} is both a value and a group of fields.")
            node = child
        last = segments[-1]
        if isinstance(node.get(last), dict):
            raise BadPayload(f"The form field {key[:100]!r} is both a value and a group of fields.")
        node[last] = value
    return out
