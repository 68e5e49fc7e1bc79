"""Property-based contract tests: Schemathesis over both services' whole OpenAPI documents.

Every operation gets a bounded number of generated requests (valid and invalid ones), sent in-process
through Schemathesis' ASGI transport with the admin token (or, on `/v1/partner/...`, a partner API key), and
every built-in check runs on each answer: no 5xx, the status code is documented, the content type and the
body match what the document declares for that status, headers conform, invalid input is refused and valid
input accepted. A partner, its key and a lead offered to it are seeded first, and generated ids are now and
then replaced by theirs, so the endpoints are exercised past their 404s.

One database (SQLite, the `make run` default) and the bundled broker (so `/readyz` is truthfully ready).
`SCHEMATHESIS_EXAMPLES` raises the number of examples per operation for a deeper local run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python.asgi import HOST, ASGIClient, shutdown_lifespans

from services.lead_router.app import create_app as create_lead_router
from services.sla_monitor.app import create_app as create_sla_monitor
from shared.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.fixtures.apps import asgi_client
from tests.fixtures.builders import make_partner, partner_auth, post_lead, route_waiting
from tests.fixtures.databases import migrated_sqlite

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "20"))
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PARTNER_ID = "acme"
BASE_URL = f"http://{HOST}"
STREAM = "/v1/alerts/stream"
# Edge values for the metrics window: the ends of the calendar, and a local midnight next to them.
INSTANTS = ["0001-01-01T00:00:00Z", "0001-01-01", "9999-12-31", "9999-12-31T23:59:59-12:00", "2026-11-20",
            "2026-11-20T15:04:05+14:00", "2026-11-20T15:04:05"]

CONFIG = schemathesis.Config.from_dict({"request-timeout": 5})
# Every operation gets EXAMPLES generated requests (and the coverage phase's boundary cases); deterministic,
# so a failure shows up on every run and not on one in ten.
EXAMPLE_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                            suppress_health_check=list(HealthCheck))


@dataclass
class Seeded:
    """Ids that exist, and the partner's credentials."""

    partner_headers: dict[str, str]
    ids: dict[str, str]


def service_settings(db_url: str, bootstrap: str) -> Settings:
    """Both services on one database, no background Kafka parts (nothing here needs routing to run by
    itself), the real broker address so `/readyz` reports it reachable."""
    return Settings(database_url=db_url, admin_token=ADMIN_TOKEN, kafka_bootstrap=bootstrap, topic_prefix="contract",
                    run_relay=False, run_router=False, sla_run_kafka=False, sla_run_scheduler=False,
                    performance_refresh_s=0, sla_stream_keepalive_s=0.2)


@pytest.fixture(scope="module")
async def contract_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    return await migrated_sqlite(str(tmp_path_factory.mktemp("contract")))


@pytest.fixture(scope="module")
async def seeded(contract_db: str, bootstrap: str) -> Seeded:
    """A partner with an API key and a lead offered to it, written through the API by a short-lived app."""
    app = create_lead_router(service_settings(contract_db, bootstrap))
    async with app.router.lifespan_context(app), asgi_client(app, "http://lead-router") as client:
        await make_partner(client, ADMIN, PARTNER_ID, products=[], industries=[])
        partner_headers = await partner_auth(client, ADMIN, PARTNER_ID)
        keys = await client.post(f"/v1/partners/{PARTNER_ID}/api-keys", headers=ADMIN)
        lead = await post_lead(client)
        assert lead.status_code == 202, lead.text
        await route_waiting(app)
        offered = await client.get(f"/v1/leads/{lead.json()['lead_id']}", headers=ADMIN)
        assert offered.json()["status"] == "offered", offered.text
    return Seeded(partner_headers=partner_headers,
                  ids={"partner_id": PARTNER_ID, "lead_id": lead.json()["lead_id"], "key_id": keys.json()["key_id"],
                       "source": "generic"})


def document(create_app: Callable[[Settings], FastAPI]) -> dict[str, Any]:
    """The service's OpenAPI document; it does not depend on the settings."""
    return create_app(service_settings("sqlite+aiosqlite:///:memory:", "127.0.0.1:1")).openapi()


lead_router = schemathesis.openapi.from_dict(document(create_lead_router), config=CONFIG)
sla_monitor = schemathesis.openapi.from_dict(document(create_sla_monitor), config=CONFIG)
KNOWN_IDS: dict[str, str] = {}


def sometimes(strategy: Any, replacements: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Half of the generated parameter sets get some of their values replaced (`replacements` gives a
    strategy per replaced name)."""
    def expand(params: Any) -> Any:
        chosen = replacements(params) if isinstance(params, dict) else {}
        if not chosen:
            return st.just(params)
        replaced = st.fixed_dictionaries({name: chosen.get(name, st.just(value)) for name, value in params.items()})
        return st.one_of(st.just(params), replaced)

    return strategy.flatmap(expand)


@lead_router.hook
@sla_monitor.hook
def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
    """Ids that exist (a lead offered to the seeded partner, the partner, its key, the default SLA policy), so
    the endpoints are exercised past their 404s. Not for replacing the seeded partner: a generated body may
    deactivate it, and its key would open nothing afterwards."""
    if context.operation is not None and context.operation.label == "PUT /v1/partners/{partner_id}":
        return strategy
    return sometimes(strategy, lambda params: {name: st.just(KNOWN_IDS[name]) for name in params if name in KNOWN_IDS})


@lead_router.hook
def before_generate_query(context: Any, strategy: Any) -> Any:
    """Windows at the edges of the calendar for the metrics' `from`/`to` (plain strings in the document)."""
    return sometimes(strategy, lambda params: {name: st.sampled_from(INSTANTS) for name in params
                                               if name in ("from", "to")})


@lead_router.hook
@sla_monitor.hook
def filter_failure(context: Any, failure: Failure, case: Any, response: Any) -> bool:
    """Keep every failure but one kind: a schema-valid request refused with 422 only by the services' own
    rules (field errors of type `value_error`, or `country_unknown`), which a JSON Schema cannot state: an
    opaque cursor the list did not issue, `from` before `to`, a holiday calendar for the country, unique rule
    names, an activity not before its lead, a two-letter code that is no ISO 3166 country. A 422 from the
    declared types and constraints themselves (`int_type`, `string_pattern_mismatch`, ...) means the document
    and the validation disagree: that failure stays.
    TODO(document): some of these could be stated: `business_hours.days` 1-7 and
    `operating_periods.start_months` 1-12 (distinct), `HH:MM` times, the SLA durations' ISO 8601 pattern."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    errors = response.json().get("errors") or [{}]
    return not all(error.get("type") in ("value_error", "country_unknown") for error in errors)


def asgi(app: FastAPI) -> ASGIClient:
    return ASGIClient(cast(Any, app))


@pytest.fixture(scope="module")
def services(contract_db: str, bootstrap: str, seeded: Seeded) -> Iterator[dict[str, ASGIClient]]:
    """Both apps with their lifespans started once; Schemathesis keeps them running in its own event loop
    thread, where every generated request is served."""
    settings = service_settings(contract_db, bootstrap)
    try:
        with asgi(create_lead_router(settings)) as router, asgi(create_sla_monitor(settings)) as monitor:
            policy = monitor.put(f"{BASE_URL}/v1/sla/policies/default", headers=ADMIN, json={
                "accept_within": "PT4H", "first_touch_within": "PT24H", "report_back_every": "P7D",
                "clock": "business_hours", "on_accept_breach": "recall"})
            assert policy.status_code in (200, 201), policy.text
            KNOWN_IDS.update(seeded.ids, name="default")
            yield {"lead_router": router, "sla_monitor": monitor}
    finally:
        shutdown_lifespans()
        KNOWN_IDS.clear()


def call(case: Any, client: ASGIClient, seeded: Seeded) -> None:
    """The partner key on the partner API, the admin token everywhere else (open endpoints ignore it)."""
    headers = seeded.partner_headers if case.path.startswith("/v1/partner/") else ADMIN
    excluded: list[Any] = []
    # The alert stream never ends by itself: what arrived before the timeout is its response.
    timeout = 0.5 if case.path == STREAM else None
    case.call_and_validate(base_url=BASE_URL, session=client, headers=headers, excluded_checks=excluded,
                           **({"timeout": timeout} if timeout else {}))


@lead_router.parametrize()
@EXAMPLE_SETTINGS
def test_lead_router_conforms(case: Any, services: dict[str, ASGIClient], seeded: Seeded) -> None:
    call(case, services["lead_router"], seeded)


@sla_monitor.parametrize()
@EXAMPLE_SETTINGS
def test_sla_monitor_conforms(case: Any, services: dict[str, ASGIClient], seeded: Seeded) -> None:
    call(case, services["sla_monitor"], seeded)
