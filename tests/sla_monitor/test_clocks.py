"""Clocks opened, met and closed by lead events; breaches flagged once; alerts listed, acknowledged and
resolved; report back breaching each period. On SQLite and PostgreSQL, handlers fed directly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from services.sla_monitor.handlers import monitor_handlers
from services.sla_monitor.scheduler import flag_due
from shared.events import CloudEvent, new_event
from shared.kafka import handle_batch
from shared.models import OutboxMessage, SlaClock
from tests.fixtures.builders import rows
from tests.sla_monitor.conftest import Feed, t

CALENDAR = {"accept_within": "PT1H", "first_touch_within": "PT2H", "report_back_every": "PT3H",
            "clock": "calendar", "on_accept_breach": "alert"}
LEAD, OTHER = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


async def put_policy(client: httpx.AsyncClient, admin: dict[str, str], name: str = "default", **change: Any) -> None:
    response = await client.put(f"/v1/sla/policies/{name}", json=CALENDAR | change, headers=admin)
    assert response.status_code in (200, 201), response.text


async def clocks(app: FastAPI, lead_id: str = LEAD) -> dict[str, list[SlaClock]]:
    out: dict[str, list[SlaClock]] = {}
    for clock in await rows(app, SlaClock, SlaClock.lead_id == lead_id, order_by=SlaClock.started_at):
        out.setdefault(clock.kind, []).append(clock)
    return out


async def alerts(client: httpx.AsyncClient, admin: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/alerts", params=params, headers=admin)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def sla_events(app: FastAPI, *names: str) -> list[CloudEvent]:
    """The monitor's events on `<prefix>.sla` named `names` (default: the alert events)."""
    names = names or ("sla.breached", "sla.resolved")
    return [ev for ev in (CloudEvent.parse(m.payload) for m in await rows(
        app, OutboxMessage, OutboxMessage.topic == "test.sla", order_by=OutboxMessage.id)) if ev.name in names]


async def verdicts(app: FastAPI) -> list[tuple[str, str, str]]:
    return [(ev.data["partner_id"], ev.data["kind"], ev.data["verdict"])
            for ev in await sla_events(app, "sla.clock_ended")]


async def test_clock_ends_are_published_with_their_verdict(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                           admin: dict[str, str], feed: Feed) -> None:
    """`sla.clock_ended` for accept and first-touch clocks: met on time, met late, recalled; nothing for
    report back or a superseded clock."""
    await put_policy(monitor, admin)
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await feed("lead.accepted", LEAD, t(17, 10, 59), partner_id="acme", status="accepted")
    assert await verdicts(monitor_app) == [("acme", "accept", "met")]
    await feed("lead.activity", LEAD, t(17, 13), partner_id="acme", status="accepted")  # due 12:59
    assert await verdicts(monitor_app) == [("acme", "accept", "met"), ("acme", "first_touch", "missed")]
    [ended] = (await sla_events(monitor_app, "sla.clock_ended"))[1:]
    assert (ended.subject, ended.data["lead_id"], ended.data["due_at"], ended.data["ended_at"]) == (
        LEAD, LEAD, "2026-11-17T12:59:00+00:00", "2026-11-17T13:00:00+00:00")

    await feed("lead.routed", OTHER, t(17, 10), partner_id="acme")
    await feed("lead.routed", OTHER, t(17, 10, 1), partner_id="bravo")  # supersedes acme's clock: no verdict
    await feed("lead.recalled", OTHER, t(17, 11, 30), partner_id="bravo", status="received")
    assert (await verdicts(monitor_app))[2:] == [("bravo", "accept", "missed")]


async def test_accept_clock_opens_and_is_met_in_time(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                     admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin)
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    [accept] = (await clocks(monitor_app))["accept"]
    assert (accept.status, accept.partner_id, accept.due_at, accept.armed) == ("open", "acme", t(17, 11), True)

    await feed("lead.accepted", LEAD, t(17, 10, 30), partner_id="acme", status="accepted")
    state = await clocks(monitor_app)
    accept = state["accept"][0]
    assert (accept.status, accept.met_at, accept.met_late, accept.breached, accept.armed) == (
        "met", t(17, 10, 30), False, False, False)
    assert [(c.status, c.due_at) for c in state["first_touch"]] == [("open", t(17, 12, 30))]
    assert [(c.status, c.due_at) for c in state["report_back"]] == [("open", t(17, 13, 30))]
    assert await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 11, 30)) == []


async def test_rejection_meets_the_accept_clock_and_a_new_offer_starts_another(monitor_app: FastAPI,
                                                                               monitor: httpx.AsyncClient,
                                                                               admin: dict[str, str],
                                                                               feed: Feed) -> None:
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await feed("lead.rejected", LEAD, t(17, 10, 5), partner_id="acme", status="received", reason="no_capacity")
    await feed("lead.routed", LEAD, t(17, 10, 6), partner_id="bravo")
    accept = (await clocks(monitor_app))["accept"]
    assert [(c.partner_id, c.status) for c in accept] == [("acme", "met"), ("bravo", "open")]
    # Built-in default, business hours, partner unknown to the projection: UTC 09-17 Mon-Fri, PT4H.
    assert accept[1].due_at == t(17, 14, 6) and accept[1].clock == "business_hours"


async def test_breach_is_flagged_exactly_once_and_resolves_on_the_late_accept(
        monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin)
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    assert await flag_due(sessions, settings, t(17, 10, 59, 59)) == []
    [flagged] = await flag_due(sessions, settings, t(17, 11, 0, 1))
    assert await flag_due(sessions, settings, t(17, 11, 0, 1)) == []
    assert await flag_due(sessions, settings, t(17, 12)) == []

    [alert] = await alerts(monitor, admin)
    assert alert["alert_id"] == flagged.alert_id
    assert {k: alert[k] for k in ("lead_id", "partner_id", "kind", "status", "action", "resolved_at")} == {
        "lead_id": LEAD, "partner_id": "acme", "kind": "accept_overdue", "status": "open", "action": "alert",
        "resolved_at": None}
    assert (alert["due_at"], alert["breached_at"]) == ("2026-11-17T11:00:00Z", "2026-11-17T11:00:01Z")
    [breached] = await sla_events(monitor_app)
    assert (breached.name, breached.source, breached.subject) == ("sla.breached", "/sla-monitor", LEAD)
    assert breached.data["alert_id"] == alert["alert_id"] and breached.data["action"] == "alert"

    await feed("lead.accepted", LEAD, t(17, 11, 30), partner_id="acme", status="accepted")
    [alert] = await alerts(monitor, admin)
    assert (alert["status"], alert["resolved_at"], alert["resolution"]) == ("resolved", "2026-11-17T11:30:00Z", "met")
    accept = (await clocks(monitor_app))["accept"][0]
    assert (accept.met_late, accept.breached, accept.met_at, accept.due_at) == (True, True, t(17, 11, 30), t(17, 11))
    assert [e.name for e in await sla_events(monitor_app)] == ["sla.breached", "sla.resolved"]


async def test_recall_policy_puts_the_recall_on_the_breach_and_the_recall_closes_the_clock(
        monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin, on_accept_breach="recall")
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    [alert] = await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 11))
    [breached] = await sla_events(monitor_app)
    assert {k: breached.data[k] for k in ("action", "lead_id", "partner_id", "kind", "alert_id")} == {
        "action": "recall", "lead_id": LEAD, "partner_id": "acme", "kind": "accept_overdue",
        "alert_id": alert.alert_id}

    await feed("lead.recalled", LEAD, t(17, 11, 0, 1), partner_id="acme", status="received",
               reason="accept_overdue", alert_id=alert.alert_id)
    await feed("lead.routed", LEAD, t(17, 11, 0, 2), partner_id="bravo")
    accept = (await clocks(monitor_app))["accept"]
    assert [(c.partner_id, c.status, c.close_reason, c.breached) for c in accept] == [
        ("acme", "closed", "recalled", True), ("bravo", "open", None, False)]
    [listed] = await alerts(monitor, admin)
    assert (listed["status"], listed["resolution"], listed["action"]) == ("resolved", "recalled", "recall")


async def test_policy_applies_to_clocks_opened_after_it_is_stored(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                                  admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin)
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await put_policy(monitor, admin, name="acme", accept_within="PT10M")
    await feed("lead.routed", OTHER, t(17, 10), partner_id="acme")
    await feed("lead.routed", "33333333-3333-3333-3333-333333333333", t(17, 10), partner_id="bravo")
    assert (await clocks(monitor_app))["accept"][0].due_at == t(17, 11)
    assert (await clocks(monitor_app, OTHER))["accept"][0].due_at == t(17, 10, 10)
    assert (await clocks(monitor_app, "33333333-3333-3333-3333-333333333333"))["accept"][0].due_at == t(17, 11)


async def test_partner_projection_gives_the_business_calendar(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                              admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin, clock="business_hours", accept_within="PT4H")
    await feed("partner.upserted", "acme", t(1, 0), partner_id="acme", timezone="America/Los_Angeles",
               business_hours={"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"}, holiday_country="US")
    await feed("partner.upserted", "acme", t(1, 0) - timedelta(days=1), partner_id="acme", timezone="UTC")  # older
    await feed("lead.routed", LEAD, t(21, 0, 30), partner_id="acme")  # Friday 16:30 in Los Angeles
    assert (await clocks(monitor_app))["accept"][0].due_at == t(23, 20, 30)  # Monday 12:30 PST


async def test_the_offer_carries_the_calendar_when_the_partner_event_comes_late(
        monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str], feed: Feed) -> None:
    """A new partner's first `lead.routed` handled before its `partner.upserted` (another topic): the clock
    is timed on the calendar the offer carries, not on a UTC 09-17 default; the late upsert, older than the
    offer, changes nothing."""
    await put_policy(monitor, admin, clock="business_hours", accept_within="PT4H")
    los_angeles = {"timezone": "America/Los_Angeles", "holiday_country": "US",
                   "business_hours": {"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"}}
    await feed("lead.routed", LEAD, t(21, 0, 30), partner_id="acme", partner_calendar=los_angeles)
    assert (await clocks(monitor_app))["accept"][0].due_at == t(23, 20, 30)  # Monday 12:30 PST
    await feed("partner.upserted", "acme", t(20, 0), partner_id="acme", timezone="UTC",
               business_hours={"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "17:00"})
    await feed("lead.routed", OTHER, t(21, 0, 30), partner_id="acme")  # an event without the calendar
    assert (await clocks(monitor_app, OTHER))["accept"][0].due_at == t(23, 20, 30)


async def test_first_touch_is_met_by_the_first_activity_and_report_back_restarts(
        monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin)
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await feed("lead.accepted", LEAD, t(17, 10, 10), partner_id="acme", status="accepted")
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    [late] = await flag_due(sessions, settings, t(17, 12, 10))  # first touch was due 12:10
    assert late.kind == "first_touch_overdue"
    ack = await monitor.post(f"/v1/alerts/{late.alert_id}/ack", json={"by": "ops@vendor", "note": "calling them"},
                             headers=admin)
    assert ack.status_code == 200, ack.text
    assert (ack.json()["status"], ack.json()["acknowledged_by"], ack.json()["note"]) == (
        "acknowledged", "ops@vendor", "calling them")
    assert [a["alert_id"] for a in await alerts(monitor, admin, status="acknowledged")] == [late.alert_id]
    assert await alerts(monitor, admin, status="open") == []

    await feed("lead.activity", LEAD, t(17, 12, 30), partner_id="acme", status="accepted", type="first_touch",
               channel="call", first_touch=True)
    [resolved] = await alerts(monitor, admin, status="resolved")
    assert (resolved["alert_id"], resolved["acknowledged_by"]) == (late.alert_id, "ops@vendor")
    state = await clocks(monitor_app)
    assert [(c.status, c.met_late) for c in state["first_touch"]] == [("met", True)]
    assert [(c.status, c.due_at) for c in state["report_back"]] == [("met", t(17, 13, 10)), ("open", t(17, 15, 30))]
    # A second activity does not touch first touch again; it restarts report back once more.
    await feed("lead.activity", LEAD, t(17, 13), partner_id="acme", status="accepted", type="follow_up",
               channel="email", first_touch=False)
    state = await clocks(monitor_app)
    assert len(state["first_touch"]) == 1
    assert [c.status for c in state["report_back"]] == ["met", "met", "open"]
    acked_again = await monitor.post(f"/v1/alerts/{late.alert_id}/ack", json={"by": "x"}, headers=admin)
    assert acked_again.status_code == 409


async def test_report_back_breaches_again_each_period_and_a_final_disposition_ends_it(
        monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin, first_touch_within="P30D")
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await feed("lead.accepted", LEAD, t(17, 10), partner_id="acme", status="accepted")
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    first = await flag_due(sessions, settings, t(17, 13))
    assert [(a.kind, a.period, a.due_at) for a in first] == [("report_back_overdue", 1, t(17, 13))]
    assert await flag_due(sessions, settings, t(17, 15)) == []
    second = await flag_due(sessions, settings, t(17, 16))
    assert [(a.period, a.due_at) for a in second] == [(2, t(17, 16))]
    # The monitor was away for several periods: one alert for now, the missed ones are skipped.
    third = await flag_due(sessions, settings, t(18, 2, 30))
    assert [(a.period, a.due_at) for a in third] == [(3, t(17, 19))]
    [clock] = (await clocks(monitor_app))["report_back"]
    assert (clock.period, clock.due_at, clock.armed) == (4, t(18, 4), True)
    assert len(await alerts(monitor, admin, kind="report_back_overdue", status="open")) == 3

    await feed("lead.disposition", LEAD, t(18, 3), partner_id="acme", status="won", disposition="won", final=True)
    state = await clocks(monitor_app)
    assert [(c.status, c.met_late, c.armed) for c in state["report_back"]] == [("met", False, False)]
    assert [(c.status, c.close_reason) for c in state["first_touch"]] == [("met", None)]  # a final one counts
    assert len(await alerts(monitor, admin, status="resolved")) == 3
    assert await flag_due(sessions, settings, t(30, 0)) == []
    assert [e.name for e in await sla_events(monitor_app)] == ["sla.breached"] * 3 + ["sla.resolved"] * 3


async def test_a_working_disposition_restarts_report_back_but_is_no_first_touch(
        monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin)
    await feed("lead.accepted", LEAD, t(17, 10), partner_id="acme", status="accepted")
    await feed("lead.disposition", LEAD, t(17, 11), partner_id="acme", status="working", disposition="working",
               final=False)
    state = await clocks(monitor_app)
    assert [c.status for c in state["first_touch"]] == ["open"]
    assert [(c.status, c.due_at) for c in state["report_back"]] == [("met", t(17, 13)), ("open", t(17, 14))]


async def test_alert_list_filters_and_pages(monitor_app: FastAPI, monitor: httpx.AsyncClient, admin: dict[str, str],
                                            feed: Feed) -> None:
    await put_policy(monitor, admin)
    leads = [f"0000000{i}-0000-0000-0000-000000000000" for i in range(5)]
    for i, lead in enumerate(leads):
        await feed("lead.routed", lead, t(17, 10, i), partner_id="acme" if i % 2 == 0 else "bravo")
    await feed("lead.accepted", leads[0], t(17, 10, 30), partner_id="acme", status="accepted")
    flagged = await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 12, 45))
    assert sorted(a.kind for a in flagged) == ["accept_overdue"] * 4 + ["first_touch_overdue"]

    assert len(await alerts(monitor, admin)) == 5
    assert {a["lead_id"] for a in await alerts(monitor, admin, partner_id="bravo")} == {leads[1], leads[3]}
    assert [a["lead_id"] for a in await alerts(monitor, admin, kind="first_touch_overdue")] == [leads[0]]
    assert len(await alerts(monitor, admin, status="open", partner_id="acme", kind="accept_overdue")) == 2
    seen, cursor = [], None
    for _ in range(5):
        page = await monitor.get("/v1/alerts", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                                 headers=admin)
        seen += [a["alert_id"] for a in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(a.alert_id for a in flagged)
    for params in ({"status": "closed"}, {"kind": "late"}, {"limit": 0}, {"cursor": "garbage"}):
        assert (await monitor.get("/v1/alerts", params=params, headers=admin)).status_code == 422
    assert (await monitor.get("/v1/alerts")).status_code == 401
    assert (await monitor.post(f"/v1/alerts/{flagged[0].alert_id}/ack", json={"by": "x"})).status_code == 401
    assert (await monitor.post("/v1/alerts/nope/ack", json={"by": "x"}, headers=admin)).status_code == 404
    assert (await monitor.post(f"/v1/alerts/{flagged[0].alert_id}/ack", json={}, headers=admin)).status_code == 422


async def test_metrics_report_clocks_and_alerts(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                admin: dict[str, str], feed: Feed) -> None:
    await put_policy(monitor, admin)
    await feed("lead.routed", LEAD, t(17, 10), partner_id="acme")
    await flag_due(monitor_app.state.sessions, monitor_app.state.settings, t(17, 11))
    text = (await monitor.get("/metrics")).text
    assert 'sla_open_clocks{kind="accept"} 1.0' in text
    assert 'sla_alerts{kind="accept_overdue",status="open"} 1.0' in text
    assert "sla_scheduler_lateness_seconds_bucket" in text and "sla_consumer_lag" in text
    assert (await monitor.get("/healthz")).json() == {"status": "ok"}


async def test_a_consumer_batch_of_one_leads_events_in_one_transaction(monitor_app: FastAPI,
                                                                        monitor: httpx.AsyncClient,
                                                                        admin: dict[str, str]) -> None:
    """The consumer handles a partition's batch in one transaction; redelivered ids are skipped."""
    await put_policy(monitor, admin)
    data = {"lead_id": LEAD, "partner_id": "acme", "source": "generic"}
    events = [new_event("lead.routed", source="/lead-router", subject=LEAD, data=data | {"status": "offered"},
                        at=t(17, 10)),
              new_event("lead.accepted", source="/lead-router", subject=LEAD, data=data | {"status": "accepted"},
                        at=t(17, 10, 5)),
              new_event("lead.activity", source="/lead-router", subject=LEAD,
                        data=data | {"status": "accepted", "type": "first_touch", "first_touch": True},
                        at=t(17, 10, 9))]
    handlers = monitor_handlers(monitor_app.state.settings)
    sessions = monitor_app.state.sessions
    assert await handle_batch(sessions, "sla-monitor", events, handlers) == 3
    assert await handle_batch(sessions, "sla-monitor", events, handlers) == 0
    state = await clocks(monitor_app)
    assert [c.status for c in state["accept"]] == ["met"]
    assert [c.status for c in state["first_touch"]] == ["met"]
    assert [c.status for c in state["report_back"]] == ["met", "open"]
