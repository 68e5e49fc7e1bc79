"""Errors nobody planned for: a 500 problem document with an error id in the body, header and log (never a
stack trace); a malformed webhook secret refuses the start, naming the variable."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from services.lead_router.app import create_app
from shared.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.builders import assert_problem


async def test_an_unexpected_error_is_a_problem_document_with_an_id(caplog: pytest.LogCaptureFixture) -> None:
    app: FastAPI = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", admin_token=ADMIN_TOKEN,
                                       run_relay=False, run_router=False, kafka_bootstrap="127.0.0.1:1"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://lead-router") as client:
        with caplog.at_level(logging.ERROR):
            response = await client.get("/boom")
    problem = assert_problem(response, 500)
    error_id = response.headers["x-error-id"]
    assert error_id in problem["detail"] and "secret internals" not in response.text
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.parametrize("secret", ["garbage", "whsec_", "whsec_!!!!", "whsec_c2hvcnQ="])
def test_a_malformed_webhook_secret_refuses_the_start(monkeypatch: pytest.MonkeyPatch, secret: str) -> None:
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_HUBSPOT_EU", secret)
    with pytest.raises(ValueError, match="LEADROUTER_WEBHOOK_SECRET_HUBSPOT_EU"):
        Settings()
    monkeypatch.setenv("LEADROUTER_WEBHOOK_SECRET_HUBSPOT_EU", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert Settings().webhook_secret("hubspot-eu") == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
