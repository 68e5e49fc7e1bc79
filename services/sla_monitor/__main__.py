"""`python -m services.sla_monitor`: serve the SLA monitor on LEADROUTER_HOST:LEADROUTER_MONITOR_PORT."""

from __future__ import annotations

import logging

import uvicorn

from services.sla_monitor.app import create_app
from shared.config import get_settings


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.monitor_port,
                log_level=settings.log_level, access_log=False)


if __name__ == "__main__":
    main()
