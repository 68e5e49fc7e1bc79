"""`python -m services.lead_router`: serve the lead_router on LEADROUTER_HOST:LEADROUTER_ROUTER_PORT."""

from __future__ import annotations

from services.lead_router.app import create_app
from shared.config import get_settings
from shared.serve import serve


def main() -> None:
    settings = get_settings()
    serve(create_app(settings), settings, settings.router_port)


if __name__ == "__main__":
    main()
