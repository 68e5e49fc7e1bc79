"""End to end: the bundled broker, the real lead_router and sla_monitor processes on one database, SLA
policies with second-scale durations on the calendar clock, and independent Kafka readers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.broker import free_port
from tests.fixtures.builders import lead_body, partner_body
from tests.fixtures.processes import ADMIN_TOKEN, Service, read_events, service_env, unique_prefix

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Stack:
    def __init__(self, db_url: str, bootstrap: str, tmp_path: Path) -> None:
        self.prefix = unique_prefix()
        env = service_env(db_url, bootstrap, self.prefix, LEADROUTER_ROUTER_PORT=str(free_port()),
                          LEADROUTER_MONITOR_PORT=str(free_port()))
        self.router = Service("services.lead_router", env, int(env["LEADROUTER_ROUTER_PORT"]), tmp_path / "router.log")
        self.monitor = Service("services.sla_monitor", env, int(env["LEADROUTER_MONITOR_PORT"]),
                               tmp_path / "monitor.log")

    def start(self) -> Stack:
        self.router.start()
        self.monitor.start()
        return self

    def stop(self) -> None:
        self.monitor.stop()
        self.router.stop()


@pytest.fixture
def stack(fresh_db: str, bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    running = Stack(fresh_db, bootstrap, tmp_path).start()
    try:
        yield running
    finally:
        running.stop()


def put_policy(monitor: httpx.Client, **policy: str) -> None:
    body = {"accept_within": "PT1H", "first_touch_within": "PT1H", "report_back_every": "PT1H", "clock": "calendar",
            "on_accept_breach": "alert", **policy}
    response = monitor.put("/v1/sla/policies/default", json=body, headers=ADMIN)
    assert response.status_code in (200, 201), response.text


def setup_partners(router: httpx.Client, *ids: str) -> dict[str, dict[str, str]]:
    keys = {}
    for pid in ids:
        assert router.put(f"/v1/partners/{pid}", json=partner_body(name=pid), headers=ADMIN).status_code == 201
        key = router.post(f"/v1/partners/{pid}/api-keys", headers=ADMIN).json()["api_key"]
        keys[pid] = {"Authorization": f"Bearer {key}"}
    return keys


def post_lead(router: httpx.Client) -> str:
    response = router.post("/v1/webhooks/generic", json=lead_body())
    assert response.status_code == 202, response.text
    return str(response.json()["lead_id"])


def lead(router: httpx.Client, lead_id: str) -> dict[str, Any]:
    return dict(router.get(f"/v1/leads/{lead_id}", headers=ADMIN).json())


def alerts(monitor: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = monitor.get("/v1/alerts", params={"limit": "500", **params}, headers=ADMIN)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def names_for(events: list[Any], lead_id: str) -> list[str]:
    return [ev.name for _, ev in events if ev.subject == lead_id]


def recall_scenario(stack: Stack) -> tuple[str, str, dict[str, Any]]:
    """The HTTP side, driven synchronously (the processes run on their own)."""
    with httpx.Client(base_url=stack.router.url, timeout=10) as router, \
            httpx.Client(base_url=stack.monitor.url, timeout=10) as monitor:
        put_policy(monitor, accept_within="PT2S", on_accept_breach="recall")
        keys = setup_partners(router, "alpha", "bravo")
        lead_id = post_lead(router)
        stack.router.wait_until(lambda: lead(router, lead_id)["status"] == "offered", 30)
        late = lead(router, lead_id)["partner_id"]
        offered_at = time.monotonic()
        stack.router.wait_until(lambda: lead(router, lead_id)["partner_id"] not in (late, None), 30)
        assert time.monotonic() - offered_at < 10
        assert router.post(f"/v1/partner/leads/{lead_id}/accept", headers=keys[late]).status_code == 409
        [alert] = [a for a in alerts(monitor, kind="accept_overdue") if a["partner_id"] == late]
        assert (alert["lead_id"], alert["action"]) == (lead_id, "recall")
        stack.monitor.wait_until(lambda: alerts(monitor, partner_id=late)[0]["status"] == "resolved", 15)
    return lead_id, late, alert


async def test_unaccepted_lead_is_recalled_and_offered_to_the_next_partner(stack: Stack, bootstrap: str) -> None:
    lead_id, late, alert = recall_scenario(stack)
    events = await read_events(bootstrap, f"{stack.prefix}.leads",
                               until=lambda evs: names_for(evs, lead_id).count("lead.routed") >= 2)
    names = names_for(events, lead_id)
    assert names[:4] == ["lead.received", "lead.routed", "lead.recalled", "lead.routed"]
    recalled = next(ev for _, ev in events if ev.subject == lead_id and ev.name == "lead.recalled")
    assert {k: recalled.data[k] for k in ("partner_id", "reason", "alert_id", "status")} == {
        "partner_id": late, "reason": "accept_overdue", "alert_id": alert["alert_id"], "status": "received"}
    routed = [ev for _, ev in events if ev.subject == lead_id and ev.name == "lead.routed"]
    assert routed[0].data["partner_id"] == late and routed[1].data["partner_id"] != late

    sla = await read_events(bootstrap, f"{stack.prefix}.sla",
                            until=lambda evs: any(ev.name == "sla.breached" for _, ev in evs))
    breach = next(ev for _, ev in sla if ev.name == "sla.breached")
    assert (breach.source, breach.subject) == ("/sla-monitor", lead_id)
    assert {k: breach.data[k] for k in ("action", "lead_id", "partner_id", "kind", "alert_id")} == {
        "action": "recall", "lead_id": lead_id, "partner_id": late, "kind": "accept_overdue",
        "alert_id": alert["alert_id"]}


def first_touch_scenario(stack: Stack) -> dict[str, Any]:
    with httpx.Client(base_url=stack.router.url, timeout=10) as router, \
            httpx.Client(base_url=stack.monitor.url, timeout=10) as monitor:
        put_policy(monitor, first_touch_within="PT2S")
        keys = setup_partners(router, "alpha")
        lead_id = post_lead(router)
        stack.router.wait_until(lambda: lead(router, lead_id)["status"] == "offered", 30)
        assert router.post(f"/v1/partner/leads/{lead_id}/accept", headers=keys["alpha"]).status_code == 200
        stack.monitor.wait_until(lambda: len(alerts(monitor, kind="first_touch_overdue")) == 1, 15)
        [alert] = alerts(monitor, kind="first_touch_overdue")
        assert (alert["lead_id"], alert["partner_id"], alert["status"]) == (lead_id, "alpha", "open")
        activity = router.post(f"/v1/partner/leads/{lead_id}/activities", headers=keys["alpha"],
                               json={"type": "first_touch", "channel": "call"})
        assert activity.status_code == 201, activity.text
        stack.monitor.wait_until(lambda: alerts(monitor, kind="first_touch_overdue")[0]["status"] == "resolved", 15)
        assert alerts(monitor, kind="accept_overdue") == []
    return alert


ALERT_EVENTS = ("sla.breached", "sla.resolved")


async def test_first_touch_overdue_is_raised_and_resolved_by_the_late_activity(stack: Stack, bootstrap: str) -> None:
    alert = first_touch_scenario(stack)
    events = await read_events(bootstrap, f"{stack.prefix}.sla",
                               until=lambda evs: sum(ev.name == "sla.clock_ended" for _, ev in evs) >= 2)
    sla = [(record, ev) for record, ev in events if ev.name in ALERT_EVENTS]
    assert [(ev.name, ev.data["alert_id"]) for _, ev in sla] == [
        ("sla.breached", alert["alert_id"]), ("sla.resolved", alert["alert_id"])]
    resolved = sla[1][1]
    assert (resolved.data["status"], resolved.data["resolution"], resolved.data["kind"]) == (
        "resolved", "met", "first_touch_overdue")
    # the monitor's verdicts reach lead_router's metrics through `<prefix>.sla`: accepted in time, touched late
    ended = {ev.data["kind"]: ev.data["verdict"] for _, ev in events if ev.name == "sla.clock_ended"}
    assert ended == {"accept": "met", "first_touch": "missed"}
    with httpx.Client(base_url=stack.router.url, timeout=10) as router:
        def rates() -> tuple[Any, Any]:
            item = router.get("/v1/metrics/partners", headers=ADMIN).json()["items"][0]
            return item["accept_sla_met_rate"], item["first_touch_sla_met_rate"]
        stack.router.wait_until(lambda: rates() == (1.0, 0.0), 15)


def restart_scenario(stack: Stack) -> tuple[list[str], list[dict[str, Any]]]:
    with httpx.Client(base_url=stack.router.url, timeout=10) as router, \
            httpx.Client(base_url=stack.monitor.url, timeout=10) as monitor:
        put_policy(monitor, accept_within="PT3S")
        setup_partners(router, "alpha", "bravo")
        leads = []
        for _ in range(4):
            leads.append(post_lead(router))
            time.sleep(0.7)  # deadlines spread over ~3 seconds
        stack.monitor.wait_until(lambda: 'sla_open_clocks{kind="accept"} 4.0' in monitor.get("/metrics").text, 30)
        stack.monitor.wait_until(lambda: len(alerts(monitor)) >= 1, 15)  # breaches are coming due now
        stack.monitor.stop(kill=True)
        time.sleep(4)  # every deadline passes while the monitor is down
        stack.monitor.start()
        stack.monitor.wait_until(lambda: len(alerts(monitor)) >= 4, 15)
        time.sleep(1.5)
        found = alerts(monitor)
        assert sorted(a["lead_id"] for a in found) == sorted(leads)
        assert {a["kind"] for a in found} == {"accept_overdue"}
    return leads, found


async def test_killed_monitor_raises_every_breach_exactly_once_after_restart(stack: Stack, bootstrap: str) -> None:
    """SIGKILL while breaches come due; after the restart every expected alert exists exactly once."""
    _, found = restart_scenario(stack)
    events = await read_events(bootstrap, f"{stack.prefix}.sla", timeout_s=15, until=lambda evs: len(
        {ev.data["alert_id"] for _, ev in evs if ev.name in ALERT_EVENTS}) >= 4)
    sla = [(record, ev) for record, ev in events if ev.name in ALERT_EVENTS]
    assert {ev.data["alert_id"] for _, ev in sla if ev.name == "sla.breached"} == {a["alert_id"] for a in found}


async def test_every_monitors_stream_carries_every_alert_change(fresh_db: str, bootstrap: str,
                                                               tmp_path: Path) -> None:
    """Two monitors: the breach is flagged and acknowledged on the first; the second's stream shows both
    (it used to carry only changes made in its own process)."""
    import json
    import threading

    ports = {name: free_port() for name in ("router", "one", "two")}
    env = service_env(fresh_db, bootstrap, unique_prefix(), LEADROUTER_ROUTER_PORT=str(ports["router"]),
                      LEADROUTER_MONITOR_PORT=str(ports["one"]), LEADROUTER_SLA_SCHEDULER_MAX_SLEEP_S="1")
    services = [Service("services.lead_router", env, ports["router"], tmp_path / "router.log"),
                Service("services.sla_monitor", env, ports["one"], tmp_path / "one.log"),
                Service("services.sla_monitor", {**env, "LEADROUTER_MONITOR_PORT": str(ports["two"]),
                                                 "LEADROUTER_SLA_RUN_SCHEDULER": "false"},
                        ports["two"], tmp_path / "two.log")]
    seen: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen(url: str) -> None:
        with httpx.stream("GET", f"{url}/v1/alerts/stream", params={"max_events": "2"}, headers=ADMIN,
                          timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                elif line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))

    try:
        for service in services:
            service.start()
        router, one, two = services
        listener = threading.Thread(target=listen, args=(two.url,), daemon=True)
        listener.start()
        assert connected.wait(10)
        with httpx.Client(base_url=router.url, timeout=10) as r, httpx.Client(base_url=one.url, timeout=10) as m:
            put_policy(m, accept_within="PT2S")
            setup_partners(r, "alpha")
            lead_id = post_lead(r)
            one.wait_until(lambda: len(alerts(m)) == 1, 30)
            [alert] = alerts(m)
            ack = m.post(f"/v1/alerts/{alert['alert_id']}/ack", json={"by": "ops"}, headers=ADMIN)
            assert ack.status_code == 200, ack.text
        listener.join(30)
        assert [(a["alert_id"], a["lead_id"], a["status"]) for a in seen] == [
            (alert["alert_id"], lead_id, "open"), (alert["alert_id"], lead_id, "acknowledged")]
    finally:
        for service in reversed(services):
            service.stop()
