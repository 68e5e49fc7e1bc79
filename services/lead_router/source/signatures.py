"""Webhook signature checks over the raw body bytes.

Every check either returns `None` or raises `SignatureError` with a message fit for a 401 `detail`,
whatever the sender put in the headers or body (missing, empty, malformed, absurd timestamps, bytes that
are not UTF-8). A correctly signed body that is not UTF-8 verifies: its encoding is the caller's 400 later.

Headers are read with lowercase names from any `Mapping[str, str]`; Starlette's `Headers` is
case-insensitive, and a plain dict is searched case-insensitively when the lowercase key is absent.

Configuration mistakes (a Standard Webhooks secret that is not base64) raise `ValueError`: that is our
bug, not the sender's; `standard_webhooks_key` lets the admin endpoint refuse such a secret up front.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

TOLERANCE_S = 300
_DIGITS = re.compile(r"[0-9]{1,18}")  # more digits than that is no timestamp of this era
# HubSpot's v3 rules: decode these escapes in the request URI before signing (and only these).
_HUBSPOT_ESCAPES = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_HUBSPOT_ESCAPE = re.compile("|".join(_HUBSPOT_ESCAPES), re.IGNORECASE)


class SignatureError(Exception):
    """The request is not signed as the source's configuration requires (401)."""


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # never raises, whatever the str holds


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _required(headers: Mapping[str, str], name: str) -> str:
    value = _header(headers, name)
    if value is None:
        raise SignatureError(f"Missing {name} header.")
    return value


def _timestamp(value: str, name: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise SignatureError(f"The {name} header is not a timestamp (digits only).")
    return int(value)


def _check_age(ts_s: float, now: float | None, tolerance_s: int, name: str) -> None:
    current = time.time() if now is None else now
    if ts_s < current - tolerance_s:
        raise SignatureError(f"The {name} header is too old (over {tolerance_s} s).")
    if ts_s > current + tolerance_s:
        raise SignatureError(f"The {name} header is too far in the future (over {tolerance_s} s).")


def _hmac_b64(key: bytes, message: bytes) -> bytes:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest())


# Standard Webhooks ----------------------------------------------------------------------------------------

def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret (the prefix is optional, as in the reference libraries)."""
    raw = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is `whsec_` followed by base64") from None
    if not key:
        raise ValueError("a Standard Webhooks secret must not be empty")
    return key


def sign_standard_webhooks(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value (`v1,<base64>`) for these values."""
    signed = _bytes(f"{msg_id}.{timestamp}.") + body
    return "v1," + _hmac_b64(standard_webhooks_key(secret), signed).decode()


def verify_standard_webhooks(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None,
                             tolerance_s: int = TOLERANCE_S) -> None:
    """Standard Webhooks: `webhook-id`, `webhook-timestamp` (seconds), `webhook-signature` (space-separated
    `v1,<base64>`; other versions are ignored), HMAC-SHA256 over `{id}.{timestamp}.` + body bytes."""
    key = standard_webhooks_key(secret)
    msg_id = _required(headers, "webhook-id")
    raw_ts = _required(headers, "webhook-timestamp")
    signatures = _required(headers, "webhook-signature")
    ts = _timestamp(raw_ts, "webhook-timestamp")
    _check_age(ts, now, tolerance_s, "webhook-timestamp")
    expected = _hmac_b64(key, _bytes(f"{msg_id}.{raw_ts}.") + body)
    found_v1 = False
    for entry in signatures.split(" "):
        version, comma, value = entry.partition(",")
        if version != "v1" or not comma:
            continue
        found_v1 = True
        if hmac.compare_digest(_bytes(value), expected):
            return
    if not found_v1:
        raise SignatureError("The webhook-signature header has no v1 signature.")
    raise SignatureError("No webhook-signature matches the body.")


# HubSpot v3 -----------------------------------------------------------------------------------------------

def hubspot_uri(url: str) -> str:
    """The URI as HubSpot signs it: the escapes of its documented table decoded, nothing else touched."""
    return _HUBSPOT_ESCAPE.sub(lambda m: _HUBSPOT_ESCAPES[m.group().upper()], url)


def sign_hubspot_v3(secret: str, method: str, url: str, body: bytes, timestamp_ms: int | str) -> str:
    """The `X-HubSpot-Signature-v3` value: base64 HMAC-SHA256(secret, method + uri + body + timestamp)."""
    message = _bytes(method + hubspot_uri(url)) + body + _bytes(str(timestamp_ms))
    return _hmac_b64(_bytes(secret), message).decode()


def verify_hubspot_v3(secret: str, body: bytes, headers: Mapping[str, str], *, method: str, url: str,
                      now: float | None = None, tolerance_s: int = TOLERANCE_S) -> None:
    """HubSpot request validation v3. `X-HubSpot-Request-Timestamp` is in milliseconds; requests older than
    `tolerance_s` (HubSpot: five minutes) are refused, and so are ones as far in the future. `url` is the
    full URL HubSpot called (scheme, host, path and query as sent; the source's `signature_url` behind a
    proxy)."""
    signature = _required(headers, "x-hubspot-signature-v3")
    raw_ts = _required(headers, "x-hubspot-request-timestamp")
    ts_ms = _timestamp(raw_ts, "X-HubSpot-Request-Timestamp")
    _check_age(ts_ms / 1000, now, tolerance_s, "X-HubSpot-Request-Timestamp")
    expected = sign_hubspot_v3(secret, method, url, body, raw_ts)
    if not hmac.compare_digest(_bytes(signature), _bytes(expected)):
        raise SignatureError("The X-HubSpot-Signature-v3 header does not match the request.")


# Mautic ---------------------------------------------------------------------------------------------------

def sign_mautic(secret: str, body: bytes) -> str:
    """Mautic's `Webhook-Signature`: base64 HMAC-SHA256 of the raw body with the webhook's secret."""
    return _hmac_b64(_bytes(secret), body).decode()


def verify_mautic(secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    signature = _required(headers, "webhook-signature")
    if not hmac.compare_digest(_bytes(signature), _bytes(sign_mautic(secret, body))):
        raise SignatureError("The Webhook-Signature header does not match the body.")


# Header token ---------------------------------------------------------------------------------------------

def hash_token(token: str) -> str:
    """What is stored for a `header_token` source: the SHA-256 of the token, hex."""
    return hashlib.sha256(_bytes(token)).hexdigest()


def verify_header_token(token_sha256: str, headers: Mapping[str, str], *, header: str) -> None:
    """The header must carry the token, as is or after `Bearer ` (so `Authorization` works as the header)."""
    name = header.lower()
    value = _required(headers, name)
    expected = _bytes(token_sha256.lower())
    candidates = [value]
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        candidates.append(rest.strip())
    ok = False
    for candidate in candidates:  # no early exit: the same work whichever form matched
        ok |= hmac.compare_digest(_bytes(hash_token(candidate)), expected)
    if not ok:
        raise SignatureError(f"The {header} header does not carry the source's token.")
