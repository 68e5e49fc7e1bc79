"""A real HTTP receiver in the test process, and settings whose worker retries within a test's patience."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from shared.config import Settings
from tests.conftest import ADMIN_TOKEN, SECRET_KEY
from tests.fixtures.receiver import receiving


@pytest.fixture
def settings(db_url: str) -> Settings:
    """The receiver is on 127.0.0.1, so private addresses are allowed here; backoff is milliseconds."""
    return Settings(database_url=db_url, admin_token=ADMIN_TOKEN, run_relay=False, run_router=False,
                    route_on_intake=False,
                    kafka_bootstrap="127.0.0.1:1", topic_prefix="test", performance_refresh_s=0,
                    webhook_allow_private=True, delivery_backoff_base_s=0.01, delivery_backoff_max_s=0.05,
                    delivery_connect_timeout_s=2, delivery_timeout_s=2, secret_key=SECRET_KEY)


@dataclass
class Received:
    body: str
    headers: dict[str, str]


@dataclass
class Receiver:
    url: str
    # What to answer, in order (status, headers); once used up, 200.
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(await request.text(), {k.lower(): v for k, v in request.headers.items()}))
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers, text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver(url="")

    async def handle(request: web.Request) -> web.Response:
        return await recv.handle(request)

    async with receiving(handle, "/hooks/leads") as url:
        recv.url = url
        yield recv
