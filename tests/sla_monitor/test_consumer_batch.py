"""The monitor's consumer batch (`monitor_batch`): the clocks, alerts and events it leaves are exactly those
of handling the same events one at a time, and a fetch of many events costs a handful of statements."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from services.sla_monitor.handlers import monitor_batch, monitor_handlers
from services.sla_monitor.scheduler import flag_due
from shared.events import CloudEvent, new_event
from shared.kafka import handle_batch
from shared.models import OutboxMessage, SlaAlert, SlaClock
from tests.fixtures.builders import rows, sql_statements
from tests.sla_monitor.conftest import t

POLICY = {"accept_within": "PT1H", "first_touch_within": "PT2H", "report_back_every": "PT3H",
          "clock": "calendar", "on_accept_breach": "alert"}
HOURS = {"timezone": "Europe/Berlin", "business_hours": {"days": [1, 2, 3, 4, 5], "start": "08:00", "end": "18:00"},
         "holiday_country": "DE"}
LEADS = 24


def scenario(seed: int) -> list[tuple[str, int, int, dict[str, Any]]]:
    """(event name, lead number, minute offset, data) for LEADS leads, each lead's events in order and the
    leads interleaved: offers, accepts, rejects and recalls with a new offer, activity, dispositions, and
    partner calendars changing in between. Partners are numbers 0-3 (`{run}p{n}`)."""
    rng = random.Random(seed)
    per_lead: list[list[tuple[str, dict[str, Any]]]] = []
    for _ in range(LEADS):
        partner = rng.randrange(4)
        steps: list[tuple[str, dict[str, Any]]] = [("lead.routed", {"partner": partner})]
        if rng.random() < 0.3:  # rejected or taken back, then offered to another partner
            steps.append((rng.choice(["lead.rejected", "lead.recalled"]), {"partner": partner}))
            partner = (partner + 1) % 4
            steps.append(("lead.routed", {"partner": partner}))
        if rng.random() < 0.1:
            steps.append(("lead.routed", {"partner": partner}))  # an offer we never saw end
        if rng.random() < 0.8:
            steps.append(("lead.accepted", {"partner": partner}))
            for _ in range(rng.randrange(3)):
                steps.append(("lead.activity", {"partner": partner, "type": "call", "first_touch": True}))
            if rng.random() < 0.5:
                steps.append(("lead.disposition", {"partner": partner, "final": rng.random() < 0.5}))
        per_lead.append(steps)
    out: list[tuple[str, int, int, dict[str, Any]]] = []
    minute = 0
    while any(per_lead):
        lead = rng.choice([i for i, steps in enumerate(per_lead) if steps])
        name, data = per_lead[lead].pop(0)
        minute += rng.randrange(1, 12)
        out.append((name, lead, minute, data))
        if rng.random() < 0.08:
            minute += 1
            out.append(("partner.upserted", -1, minute, {"partner": rng.randrange(4), "calendar": rng.random() < 0.5}))
    return out


def materialize(run: str, script: list[tuple[str, int, int, dict[str, Any]]]) -> list[CloudEvent]:
    events = []
    start = t(17, 9)
    for name, lead, minute, data in script:
        at = start + timedelta(minutes=minute)
        partner_id = f"{run}p{data['partner']}"
        if name == "partner.upserted":
            calendar = HOURS if data["calendar"] else {"timezone": "UTC", "business_hours": {}, "holiday_country": None}
            events.append(new_event(name, source="/lead-router", subject=partner_id, at=at,
                                    data={"partner_id": partner_id, **calendar}))
            continue
        lead_id = f"{run}-lead-{lead:03d}"
        body: dict[str, Any] = {"lead_id": lead_id, "partner_id": partner_id, "source": "generic", "status": "x"}
        if name == "lead.routed":
            body["partner_calendar"] = HOURS if data["partner"] % 2 else None
        for key in ("type", "first_touch", "final"):
            if key in data:
                body[key] = data[key]
        events.append(new_event(name, source="/lead-router", subject=lead_id, at=at, data=body))
    return events


def chunks(events: list[CloudEvent], seed: int, breaks: set[int]) -> Iterator[list[CloudEvent]]:
    """Random-sized batches that end at every index in `breaks` (where the scheduler runs)."""
    rng = random.Random(seed)
    batch: list[CloudEvent] = []
    for i, ev in enumerate(events):
        batch.append(ev)
        if i in breaks or len(batch) >= rng.randrange(1, 40):
            yield batch
            batch = []
    if batch:
        yield batch


async def state(app: FastAPI, run: str) -> dict[str, Any]:
    """Clocks per lead and the monitor's events per lead, with ids replaced by what they stand for."""
    clocks: dict[str, list[tuple[Any, ...]]] = {}
    names: dict[str, str] = {}
    found = await rows(app, SlaClock, SlaClock.lead_id.startswith(f"{run}-"))
    for c in sorted(found, key=lambda c: (c.lead_id, c.started_at, c.kind, c.period, c.status)):
        lead = c.lead_id.removeprefix(run)
        names[c.clock_id] = f"{lead}/{c.kind}/{len(clocks.get(lead, []))}"
        clocks.setdefault(lead, []).append((
            c.kind, c.partner_id and c.partner_id.removeprefix(run), c.status, c.policy.removeprefix(run), c.clock,
            c.duration, c.started_at, c.due_at, c.armed, c.period, c.breached, c.breached_at, c.met_at, c.met_late,
            c.closed_at, c.close_reason))
    alerts = {a.alert_id: f"{names[a.clock_id]}#{a.period}"
              for a in await rows(app, SlaAlert, SlaAlert.lead_id.startswith(f"{run}-"))}
    events: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for m in await rows(app, OutboxMessage, OutboxMessage.key.startswith(f"{run}-"), order_by=OutboxMessage.id):
        ev = CloudEvent.parse(m.payload)
        data = dict(ev.data)
        for key, table in (("clock_id", names), ("alert_id", alerts)):
            if key in data:
                data[key] = table[data[key]]
        data.pop("updated_at", None)
        for key in ("lead_id", "partner_id"):
            if isinstance(data.get(key), str):
                data[key] = data[key].removeprefix(run)
        events.setdefault(m.key.removeprefix(run), []).append((ev.name, data))
    return {"clocks": clocks, "events": events}


async def test_batches_leave_what_one_event_at_a_time_leaves(monitor_app: FastAPI, monitor: httpx.AsyncClient,
                                                             admin: dict[str, str]) -> None:
    """A seeded mix of offers, accepts, rejects, recalls, re-offers, activity, dispositions and calendar
    changes, with breaches flagged (and later resolved) in between: handled one event per transaction,
    then the same events (other ids) in random-sized batches through `monitor_batch`. Every clock, alert
    and event comes out the same."""
    for name, body in (("default", POLICY), ("bp1", POLICY | {"accept_within": "PT30M"}),
                       ("ap1", POLICY | {"accept_within": "PT30M"}),
                       ("bp2", POLICY | {"clock": "business_hours", "first_touch_within": "PT4H"}),
                       ("ap2", POLICY | {"clock": "business_hours", "first_touch_within": "PT4H"})):
        assert (await monitor.put(f"/v1/sla/policies/{name}", json=body, headers=admin)).status_code in (200, 201)
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    script = scenario(seed=7)
    breaks = {len(script) // 3, 2 * len(script) // 3}
    handlers = monitor_handlers(settings)
    batch = monitor_batch(settings)

    async def flag(after: CloudEvent) -> None:
        await flag_due(sessions, settings, after.time + timedelta(seconds=1))

    one_by_one = materialize("a", script)
    for i, ev in enumerate(one_by_one):
        assert await handle_batch(sessions, "sla-monitor", [ev], handlers) == 1
        if i in breaks:
            await flag(ev)
    expected = await state(monitor_app, "a")

    batched = materialize("b", script)
    sizes = []
    for part in chunks(batched, seed=11, breaks=breaks):
        assert await handle_batch(sessions, "sla-monitor", part, handlers, batch) == len(part)
        sizes.append(len(part))
        if batched.index(part[-1]) in breaks:
            await flag(part[-1])
    got = await state(monitor_app, "b")

    assert max(sizes) > 10 and len(sizes) > 5  # real batches, not one event each
    assert sum(len(v) for v in expected["clocks"].values()) > 40
    kinds = {e[0] for v in expected["events"].values() for e in v}
    assert {"sla.breached", "sla.resolved", "sla.clock_ended"} <= kinds  # breaches flagged, then resolved
    assert got == expected


async def test_a_fetch_of_200_offers_costs_a_handful_of_statements(monitor_app: FastAPI) -> None:
    """Reading each offer's partner, policy and open clocks one event at a time made several statements per
    event; the batch reads them once."""
    sessions, settings = monitor_app.state.sessions, monitor_app.state.settings
    at: datetime = t(17, 10)
    events = [new_event("lead.routed", source="/lead-router", subject=f"lead-{i:04d}", at=at + timedelta(seconds=i),
                        data={"lead_id": f"lead-{i:04d}", "partner_id": f"p{i % 10}", "status": "offered",
                              "source": "generic", "partner_calendar": HOURS})
              for i in range(200)]
    with sql_statements(monitor_app) as seen:
        assert await handle_batch(sessions, "sla-monitor", events, monitor_handlers(settings),
                                  monitor_batch(settings)) == 200
    verbs = [s.split(None, 1)[0].upper() for s in seen]
    assert len([v for v in verbs if v not in ("BEGIN", "COMMIT", "RELEASE", "SAVEPOINT")]) <= 12, seen
    assert len(await rows(monitor_app, SlaClock)) == 200
