"""`python -m services.sla_monitor`: serve the SLA monitor on LEADROUTER_HOST:LEADROUTER_MONITOR_PORT."""

from __future__ import annotations

from services.sla_monitor.app import create_app
from shared.config import get_settings
from shared.serve import serve


def main() -> None:
    settings = get_settings()
    serve(create_app(settings), settings, settings.monitor_port)


if __name__ == "__main__":
    main()
