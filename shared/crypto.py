"""Secrets at rest: encrypted with `LEADROUTER_SECRET_KEY` (Fernet: AES-128-CBC with HMAC-SHA256, from the
maintained `cryptography` package). Several comma-separated keys rotate: the first encrypts, every one
decrypts, so old rows stay readable until they are written again."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.config import Settings


class SecretKeyMissing(Exception):
    """No `LEADROUTER_SECRET_KEY`: secrets cannot be stored or read."""


class SecretUnreadable(Exception):
    """A stored secret was encrypted with a key that is no longer configured."""


def _keys(settings: Settings) -> list[str]:
    raw = settings.secret_key.get_secret_value() if settings.secret_key else ""
    return [k.strip() for k in raw.split(",") if k.strip()]


def has_key(settings: Settings) -> bool:
    """Whether secrets can be stored and read here (`LEADROUTER_SECRET_KEY` holds at least one key)."""
    return bool(_keys(settings))


def _fernet(settings: Settings) -> MultiFernet:
    keys = _keys(settings)
    if not keys:
        raise SecretKeyMissing("LEADROUTER_SECRET_KEY is not set")
    # Any string is a key: its SHA-256 is the Fernet key (a random key of 32+ characters is expected).
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode()).digest())) for k in keys])


def encrypt(settings: Settings, secret: str) -> str:
    return _fernet(settings).encrypt(secret.encode()).decode("ascii")


def decrypt(settings: Settings, token: str) -> str:
    try:
        return _fernet(settings).decrypt(token.encode("ascii")).decode()
    except InvalidToken:
        raise SecretUnreadable("a stored secret cannot be decrypted with LEADROUTER_SECRET_KEY") from None
