"""End to end: the bundled broker, the real lead_router process, a signed webhook, and an independent
Kafka consumer that watches `<prefix>.leads`."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.broker import free_port
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.processes import ADMIN_TOKEN, Service, broker, read_events, service_env, unique_prefix

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()


@pytest.fixture
def router_factory(fresh_db: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def make(bootstrap: str, prefix: str, **extra: str) -> Service:
        env = service_env(fresh_db, bootstrap, prefix, LEADROUTER_WEBHOOK_SECRET_GENERIC=SECRET, **extra)
        env["LEADROUTER_ROUTER_PORT"] = str(free_port())
        service = Service("services.lead_router", env, int(env["LEADROUTER_ROUTER_PORT"]), tmp_path / "router.log")
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop()


def signed(body: dict[str, Any], msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(SECRET).sign(msg_id, datetime.now(UTC), payload)
    return payload.encode(), {"webhook-id": msg_id, "webhook-timestamp": str(int(datetime.now(UTC).timestamp())),
                              "webhook-signature": signature, "content-type": "application/json"}


def lead_status(http: httpx.Client, lead_id: str) -> dict[str, Any]:
    response = http.get(f"/v1/leads/{lead_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return dict(response.json())


def setup_partners(http: httpx.Client) -> dict[str, dict[str, str]]:
    keys = {}
    for pid in ("alpha", "bravo"):
        assert http.put(f"/v1/partners/{pid}", json=partner_body(name=pid), headers=ADMIN).status_code == 201
        key = http.post(f"/v1/partners/{pid}/api-keys", headers=ADMIN).json()["api_key"]
        keys[pid] = {"Authorization": f"Bearer {key}"}
    return keys


def types_for(events: list[Any], lead_id: str) -> list[str]:
    return [ev.name for _, ev in events if ev.subject == lead_id]


async def test_webhook_routes_rejects_reroutes_and_accepts(bootstrap: str, router_factory: Any) -> None:
    prefix = unique_prefix()
    service = router_factory(bootstrap, prefix).start()
    with httpx.Client(base_url=service.url, timeout=10) as http:
        keys = setup_partners(http)
        body = lead_body()
        payload, headers = signed(body)
        assert http.post("/v1/webhooks/generic", content=payload, headers={"content-type": "application/json"}
                         ).status_code == 401
        created = http.post("/v1/webhooks/generic", content=payload, headers=headers)
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]

        service.wait_until(lambda: lead_status(http, lead_id)["status"] == "offered", 30)
        first = lead_status(http, lead_id)["partner_id"]
        second = "bravo" if first == "alpha" else "alpha"
        rejected = http.post(f"/v1/partner/leads/{lead_id}/reject", json={"reason": "no_capacity"},
                             headers=keys[first])
        assert rejected.status_code == 200, rejected.text
        service.wait_until(lambda: lead_status(http, lead_id)["partner_id"] == second, 30)
        accepted = http.post(f"/v1/partner/leads/{lead_id}/accept", headers=keys[second])
        assert accepted.json() == {"lead_id": lead_id, "status": "accepted"}
        assert http.post(f"/v1/partner/leads/{lead_id}/accept", headers=keys[first]).status_code == 409

        # The same webhook again, and the same lead under a new webhook id: nothing new.
        again = http.post("/v1/webhooks/generic", content=payload, headers=headers)
        assert (again.status_code, again.json()["lead_id"], again.json()["duplicate"]) == (200, lead_id, True)
        payload2, headers2 = signed(body)
        assert http.post("/v1/webhooks/generic", content=payload2, headers=headers2).json()["lead_id"] == lead_id
        assert len(http.get("/v1/leads", headers=ADMIN).json()["items"]) == 1

    events = await read_events(bootstrap, f"{prefix}.leads",
                               until=lambda evs: "lead.accepted" in types_for(evs, lead_id))
    assert types_for(events, lead_id) == ["lead.received", "lead.routed", "lead.rejected", "lead.routed",
                                          "lead.accepted"]
    for record, event in events:
        assert record.key == lead_id.encode()
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        assert (event.specversion, event.source, event.type.startswith("leadrouter.")) == ("1.0", "/lead-router", True)
    routed = [ev for _, ev in events if ev.name == "lead.routed"]
    assert [ev.data["partner_id"] for ev in routed] == [first, second]
    assert {c["partner_id"]: c["eligible"] for c in routed[1].data["candidates"]} == {first: False, second: True}
    assert len({ev.id for _, ev in events}) == len(events)

    partners = await read_events(bootstrap, f"{prefix}.partners", until=lambda evs: len(evs) >= 2)
    assert sorted(ev.subject for _, ev in partners) == ["alpha", "bravo"]


async def test_lead_survives_broker_outage_and_restart(router_factory: Any) -> None:
    """Kafka down: the webhook is still stored (202) and routed once a broker is back. A fresh, empty
    broker (the bundled one keeps nothing) and a restarted service: the waiting lead is reconciled."""
    prefix, port = unique_prefix(), free_port()
    address = f"127.0.0.1:{port}"
    first = router_factory(address, prefix, LEADROUTER_RUN_ROUTER="false",
                           LEADROUTER_ROUTE_ON_INTAKE="false").start(wait_ready=False)
    with httpx.Client(base_url=first.url, timeout=10) as http:
        setup_partners(http)
        payload, headers = signed(lead_body())
        created = http.post("/v1/webhooks/generic", content=payload, headers=headers)
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]
        assert http.get("/readyz").status_code == 503
        with broker(port):
            # The relay publishes what waited in the outbox; nobody routes (router and routing on intake off).
            events = await read_events(address, f"{prefix}.leads",
                                       until=lambda evs: "lead.received" in types_for(evs, lead_id))
            assert types_for(events, lead_id) == ["lead.received"]
            assert lead_status(http, lead_id)["status"] == "received"
        first.stop()

    with broker(port):  # a new, empty broker: lead.received is gone with the old one
        second = router_factory(address, prefix).start()
        with httpx.Client(base_url=second.url, timeout=10) as http:
            second.wait_until(lambda: lead_status(http, lead_id)["status"] == "offered", 30)
        events = await read_events(address, f"{prefix}.leads",
                                   until=lambda evs: "lead.routed" in types_for(evs, lead_id))
        assert types_for(events, lead_id) == ["lead.routed"]
