"""`python -m services.lead_router`: serve the lead_router on LEADROUTER_HOST:LEADROUTER_ROUTER_PORT."""

from __future__ import annotations

import logging

import uvicorn

from services.lead_router.app import create_app
from shared.config import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.router_port,
                log_level=settings.log_level, access_log=False)


if __name__ == "__main__":
    main()
