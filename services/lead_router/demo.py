"""Demo partners and rules for `make run` on an empty database.

`python -m services.lead_router.demo` seeds them into LEADROUTER_DATABASE_URL and prints the new partner keys
as JSON (`{}` when partners exist already): `leadrouter up` and `leadrouter seed-demo` run it as a process,
so `shared/` never imports a service.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from sqlalchemy import func, select

from services.lead_router.partner.schemas import PartnerUpsert
from services.lead_router.partner.service import create_api_key, upsert_partner
from services.lead_router.routing.schemas import RuleSetBody
from services.lead_router.routing.service import put_rule_set
from shared.config import Settings
from shared.db import create_engine, session_factory
from shared.models import Partner

DEMO_PARTNERS: dict[str, dict[str, object]] = {
    "acme": {"name": "Acme Solutions", "tier": "gold",
             "territories": [{"country": "US", "regions": ["CA", "OR", "WA"]}],
             "products": ["storage", "backup"], "industries": [], "capacity": {"max_open_leads": 50},
             "timezone": "America/Los_Angeles", "holiday_country": "US",
             "operating_periods": {"start_months": [1, 7]},
             "objectives": [{"metric": "won_amount", "target": 250000, "per": "partner_quarter"},
                            {"metric": "accepted", "target": 40, "per": "mop"}]},
    "bluepeak": {"name": "BluePeak Systems", "tier": "platinum", "territories": [{"country": "US"}],
                 "products": ["storage", "backup", "security"], "capacity": {"max_open_leads": 100},
                 "timezone": "America/New_York", "holiday_country": "US", "fiscal_year_start_month": 4,
                 "objectives": [{"metric": "won", "target": 10, "per": "partner_quarter"}]},
    "northwind": {"name": "Northwind Partners", "tier": "registered",
                  "territories": [{"country": "US"}, {"country": "CA"}], "capacity": {"max_open_leads": 20},
                  "timezone": "America/Chicago", "holiday_country": "US"},
    "rheinwerk": {"name": "Rheinwerk IT", "tier": "silver", "territories": [{"country": "DE"}, {"country": "AT"}],
                  "timezone": "Europe/Berlin", "holiday_country": "DE", "fiscal_year_start_month": 10},
}

DEMO_RULES = {
    "qualification": {"min_score": 50},
    "rules": [
        {"name": "enterprise-storage", "when": {"product": ["storage"], "min_value": 100000},
         "route_to": {"tiers": ["platinum", "gold"]}, "strategy": "weighted"},
        {"name": "everything-else", "when": {}, "strategy": "round_robin"},
    ],
    "tier_weights": {"platinum": 4, "gold": 3, "silver": 2, "registered": 1},
}


async def seed_demo(settings: Settings) -> dict[str, str] | None:
    """Create the demo partners, one API key each, and the demo rules; None if partners exist already."""
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            if await session.scalar(select(func.count()).select_from(Partner)):
                return None
            keys = {}
            for partner_id, body in DEMO_PARTNERS.items():
                await upsert_partner(session, partner_id, PartnerUpsert.model_validate(body), settings=settings)
                keys[partner_id] = (await create_api_key(session, partner_id)).api_key
            await put_rule_set(session, RuleSetBody.model_validate(DEMO_RULES))
    finally:
        await engine.dispose()
    return keys


def main() -> None:
    keys = asyncio.run(seed_demo(Settings()))
    sys.stdout.buffer.write(orjson.dumps(keys or {}) + b"\n")


if __name__ == "__main__":
    main()
