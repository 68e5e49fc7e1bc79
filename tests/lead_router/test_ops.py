"""Operations endpoints of lead_router: probes, metrics, API docs."""

from __future__ import annotations

import json
import re

import httpx
from fastapi import FastAPI

from services.lead_router.app import create_app
from shared.config import Settings
from tests.fixtures.apps import asgi_client
from tests.fixtures.builders import assert_problem, make_partner, post_lead, route_waiting


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_reports_each_dependency(client: httpx.AsyncClient) -> None:
    """The test settings point Kafka at 127.0.0.1:1, where nothing listens."""
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "kafka": "unreachable"}


async def test_metrics_is_prometheus_text(client: httpx.AsyncClient, admin: dict[str, str], app: FastAPI) -> None:
    await make_partner(client, admin, "acme")
    await post_lead(client)
    await post_lead(client)
    await route_waiting(app)
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert 'leadrouter_leads{status="offered"} 2.0' in lines
    assert 'leadrouter_leads{status="received"} 0.0' in lines
    assert any(line.startswith("leadrouter_outbox_backlog ") for line in lines)
    assert any(line.startswith("http_requests_total{") and 'route="/healthz"' in line for line in lines)
    assert any('route="/v1/webhooks/{source}"' in line and 'status="202"' in line for line in lines)
    # where a lead's time goes, per stage (relay and consume run where the Kafka parts run)
    counts = {m.group(1): float(m.group(2)) for m in (
        re.match(r'leadrouter_stage_seconds_count\{stage="(\w+)"\} (\S+)', line) for line in lines) if m}
    assert counts["commit"] >= 2 and counts["decide"] >= 1


def db_counts(text: str) -> tuple[float, float]:
    statements = re.search(r"^leadrouter_db_statements_total (\S+)$", text, re.M)
    commits = re.search(r'^leadrouter_db_transactions_total\{outcome="commit"\} (\S+)$', text, re.M)
    assert statements and commits, text
    return float(statements.group(1)), float(commits.group(1))


async def test_metrics_count_the_database_round_trips(client: httpx.AsyncClient, admin: dict[str, str],
                                                      db_url: str) -> None:
    """Statements and transactions are counted (the bench divides them by leads): a webhook's lead is one
    intake transaction of at least two statements on SQLite (the lead; its event and timeline row), one
    statement outside a transaction on PostgreSQL (intake/direct.py)."""
    await make_partner(client, admin, "acme")
    statements, commits = db_counts((await client.get("/metrics")).text)
    assert (await post_lead(client)).status_code == 202
    after_statements, after_commits = db_counts((await client.get("/metrics")).text)
    if db_url.startswith("postgresql"):
        assert after_commits == commits and after_statements - statements >= 1  # the second scrape's reads too
    else:
        assert after_commits - commits >= 1 and after_statements - statements >= 2


async def test_docs_and_openapi(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [("/v1/webhooks/{source}", "post"), ("/v1/partners/{partner_id}", "put"),
                         ("/v1/partners", "get"), ("/v1/partners/{partner_id}/api-keys", "post"),
                         ("/v1/partners/{partner_id}/api-keys/{key_id}", "delete"), ("/v1/routing/rules", "put"),
                         ("/v1/routing/simulate", "post"), ("/v1/leads", "get"),
                         ("/v1/leads/{lead_id}/timeline", "get"),
                         ("/v1/partner/leads", "get"), ("/v1/partner/leads/{lead_id}/accept", "post"),
                         ("/v1/partner/leads/{lead_id}/reject", "post"),
                         ("/v1/partner/leads/{lead_id}/activities", "post"),
                         ("/v1/partner/leads/{lead_id}/disposition", "post")]:
        assert method in paths.get(path, {}), path
    webhook = paths["/v1/webhooks/{source}"]["post"]
    assert {"200", "202", "401", "413", "422"} <= set(webhook["responses"])
    assert "application/problem+json" in webhook["responses"]["401"]["content"]
    assert "application/json" in webhook["requestBody"]["content"]
    refs = set(re.findall(r'"\$ref":\s*"#/components/schemas/([^"]+)"', docs_text(spec)))
    assert refs <= set(spec["components"]["schemas"])  # every schema the UI shows resolves


def docs_text(spec: dict[str, object]) -> str:
    return json.dumps(spec)


async def test_database_down_is_a_503_problem_not_a_500() -> None:
    """With the database unreachable, a webhook is refused with a retryable problem; nothing half-done."""
    settings = Settings(database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none", admin_token="t",
                        run_relay=False, run_router=False, kafka_bootstrap="127.0.0.1:1")
    app = create_app(settings)
    async with app.router.lifespan_context(app), asgi_client(app, "http://lead-router") as client:
        for response in (await post_lead(client), await client.get("/v1/leads", headers={"Authorization": "Bearer t"})):
            body = assert_problem(response, 503)
            assert response.headers["retry-after"] == "5"
            assert "database" in body["detail"]
