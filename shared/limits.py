"""Request bodies are bounded, and credentials are looked at before any body is read.

`BodyGuard` is plain ASGI middleware in front of both services:

- every body has a limit (the webhook limit for intake, a larger one for the routing simulator, a small one
  for everything else); a `Content-Length` over it is refused with 413 before a byte is read, and a body
  that streams past it (no or a lying `Content-Length`) is cut off with 413 as soon as it does;
- a request that carries a body on an authenticated path needs a bearer token before its body is read:
  none at all is 401 at once; a token that is not a partner key (`lrk_…`) must be the admin token. Partner
  keys are checked against the database by the endpoint, after at most the (small) limit was read.

So an unauthenticated 200 MB POST costs nothing but its headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from shared.errors import PROBLEM_JSON, PayloadTooLarge
from shared.security import KEY_PREFIX, bearer, token_matches

ASGIApp = Callable[..., Any]
DEFAULT_LIMIT = 64 * 1024
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyTooLarge(PayloadTooLarge):
    """Raised from `receive` once a body streams past its limit: rendered 413 by the app's error handler."""


class BodyGuard:
    def __init__(self, app: ASGIApp, *, admin_token: Callable[[], str | None], limits: Mapping[str, int],
                 default_limit: int = DEFAULT_LIMIT, open_paths: tuple[str, ...] = ()) -> None:
        """`limits` maps path prefixes to byte limits (the longest matching prefix wins); `open_paths` are
        prefixes that take bodies without credentials (webhooks verify their own signatures)."""
        self.app = app
        self.admin_token = admin_token
        self.limits = sorted(limits.items(), key=lambda item: -len(item[0]))
        self.default_limit = default_limit
        self.open_paths = open_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = next((n for prefix, n in self.limits if path.startswith(prefix)), self.default_limit)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _problem(send, 413, "Payload too large", f"The body is over {limit // 1024} KiB.")
            return
        if not path.startswith(self.open_paths) and not self._may_send_body(headers.get("authorization")):
            await _problem(send, 401, "Unauthorized", "Valid credentials are required.",
                           extra=[(b"www-authenticate", b"Bearer")])
            return
        seen, over, answered = 0, False, False
        too_large = f"The body is over {limit // 1024} KiB."

        async def limited_receive() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise BodyTooLarge(too_large)
            return message

        async def guarded_send(message: Any) -> None:
            # Once the body ran over, whatever the app answers (its body parser turns any error into a 400)
            # is replaced by the 413.
            nonlocal answered
            if not over:
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await _problem(send, 413, "Payload too large", too_large)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not answered:
                await _problem(send, 413, "Payload too large", too_large)

    def _may_send_body(self, authorization: str | None) -> bool:
        token = bearer(authorization)
        if token is None:
            return False
        if token.startswith(f"{KEY_PREFIX}_"):
            return True  # a partner key: the endpoint checks it against the database
        expected = self.admin_token()
        return expected is not None and token_matches(token, expected)


async def _problem(send: Any, status: int, title: str, detail: str,
                   extra: list[tuple[bytes, bytes]] | None = None) -> None:
    slug = title.lower().replace(" ", "-")
    body = orjson.dumps({"type": f"https://leadrouter.dev/problems/{slug}", "title": title, "status": status,
                         "detail": detail})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
