"""`leadrouter`: run the whole service on one machine, apply migrations, seed demo data."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from shared.broker import start_broker, stop_process
from shared.config import Settings
from shared.migrate import upgrade

app = typer.Typer(help="Leadrouter: lead routing for channel sales.", no_args_is_help=True)

VAR = Path("var")
TOKEN_FILE = VAR / "admin-token"
KEYS_FILE = VAR / "demo-partner-keys.txt"

SAMPLE_LEAD = {
    "external_id": "demo-0001", "email": "dana.wu@example.com", "first_name": "Dana", "last_name": "Wu",
    "phone": "+1 415 555 0100", "title": "IT Director",
    "company": {"name": "Example Health", "domain": "example.com", "industry": "healthcare", "employees": 1200,
                "country": "US", "region": "CA", "postal_code": "94107"},
    "product": "storage", "estimated_value": 120000, "score": 82, "campaign": "q3-webinar",
}


def write_private(path: Path, text: str) -> None:
    """Write a secret: the file is created readable by its owner only (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    with os.fdopen(fd, "w") as out:
        out.write(text)


def seed_demo(env: dict[str, str] | None = None) -> dict[str, str]:
    """Seed demo partners, keys and rules into an empty database (a lead_router process does it: shared/
    imports no service); returns the new partner keys, empty when partners existed already."""
    done = subprocess.run([sys.executable, "-m", "services.lead_router.demo"], env=env, capture_output=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"seeding demo data failed: {done.stderr.decode(errors='replace')[-2000:]}")
    keys: dict[str, str] = json.loads(done.stdout)
    if keys:
        write_private(KEYS_FILE, "".join(f"{pid} {key}\n" for pid, key in keys.items()))
    return keys


def _admin_token(settings: Settings) -> str:
    """The configured token, else the one `make run` generated before (kept in var/), else a new one."""
    if settings.admin_token:
        return settings.admin_token
    if TOKEN_FILE.exists() and TOKEN_FILE.read_text().strip():
        return TOKEN_FILE.read_text().strip()
    token = secrets.token_urlsafe(24)
    write_private(TOKEN_FILE, token + "\n")
    return token


@app.command()
def migrate() -> None:
    """Apply the Alembic migrations to LEADROUTER_DATABASE_URL."""
    settings = Settings()
    upgrade(settings.database_url)
    typer.echo(f"migrated {settings.database_url}")


@app.command("seed-demo")
def seed_demo_command() -> None:
    """Create demo partners (with API keys) and demo routing rules, if there are no partners yet."""
    try:
        keys = seed_demo()
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if not keys:
        typer.echo("partners exist already; nothing seeded")
        return
    for partner_id, key in keys.items():
        typer.echo(f"{partner_id}: {key}")


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a service exited during start-up; see the log above")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready within {timeout_s:.0f}s")


def _banner(settings: Settings, token: str, host: str) -> str:
    router = f"http://{host}:{settings.router_port}"
    monitor = f"http://{host}:{settings.monitor_port}"
    keys = ""
    if KEYS_FILE.exists():
        lines = KEYS_FILE.read_text().split()
        pairs = dict(zip(lines[::2], lines[1::2], strict=False))
        keys = "\n".join(f"    {pid:<10} {key}" for pid, key in pairs.items())
        first = next(iter(pairs.items()), None)
    sample = json.dumps({**SAMPLE_LEAD, "external_id": f"demo-{secrets.token_hex(3)}"})
    text = f"""
Leadrouter is running.

  lead_router   {router}   (API docs: {router}/docs)
  sla_monitor   {monitor}   (API docs: {monitor}/docs)
  router worker http://{host}:{settings.worker_port}   (routing consumer; /healthz, /metrics)
  Kafka         {settings.bootstrap}   topics {settings.topic_prefix}.leads|sla|partners
  database      {settings.database_url}
  admin token   {token}

Post a lead:
  curl -sS -X POST {router}/v1/webhooks/generic -H 'Content-Type: application/json' \\
    -d '{sample}'

Follow it as ops:
  curl -sS {router}/v1/leads -H 'Authorization: Bearer {token}'
  curl -sS {router}/v1/leads/<lead_id>/timeline -H 'Authorization: Bearer {token}'
"""
    if keys:
        text += f"""
Demo partner API keys (also in {KEYS_FILE}):
{keys}
As the partner it was routed to, e.g. {first[0] if first else 'acme'}:
  curl -sS {router}/v1/partner/leads -H 'Authorization: Bearer <that partner's key>'
  curl -sS -X POST {router}/v1/partner/leads/<lead_id>/accept -H 'Authorization: Bearer <key>'
"""
    return text + "\nCtrl-C stops everything.\n"


@app.command()
def up() -> None:
    """Run everything on this machine: migrations, the bundled broker (unless LEADROUTER_KAFKA_BOOTSTRAP
    is set), lead_router and sla_monitor; seed demo data into an empty database. Ctrl-C stops it all."""
    settings = Settings()
    token = _admin_token(settings)
    env = {**os.environ, "LEADROUTER_ADMIN_TOKEN": token, "LEADROUTER_DATABASE_URL": settings.database_url}
    typer.echo(f"applying migrations to {settings.database_url}")
    upgrade(settings.database_url)
    procs: list[subprocess.Popen[bytes]] = []
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if not settings.kafka_bootstrap:
            VAR.mkdir(parents=True, exist_ok=True)
            typer.echo(f"starting the bundled Kafka-compatible broker on 127.0.0.1:{settings.embedded_kafka_port}")
            procs.append(start_broker(settings.embedded_kafka_port, log_path=VAR / "broker.log"))
            env["LEADROUTER_KAFKA_BOOTSTRAP"] = settings.bootstrap
        if seed_demo(env):
            typer.echo("seeded demo partners and routing rules")
        roles = [("services.lead_router", {"LEADROUTER_RUN_ROUTER": "false"}),
                 ("services.lead_router", {"LEADROUTER_ROUTER_PORT": str(settings.worker_port),
                                           "LEADROUTER_RUN_ROUTER": "true"}),
                 ("services.sla_monitor", {})]
        for module, extra in roles:
            procs.append(subprocess.Popen([sys.executable, "-m", module], env={**env, **extra},
                                          start_new_session=True))
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        _wait_ready(f"http://{host}:{settings.router_port}/readyz", procs)
        _wait_ready(f"http://{host}:{settings.worker_port}/readyz", procs)
        _wait_ready(f"http://{host}:{settings.monitor_port}/readyz", procs)
        typer.echo(_banner(settings, token, host))
        while not stopping:
            if any(p.poll() is not None for p in procs):
                typer.echo("a process exited unexpectedly; stopping everything", err=True)
                raise typer.Exit(1)
            time.sleep(0.2)
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        typer.echo("stopping")
        for proc in reversed(procs):
            stop_process(proc)


if __name__ == "__main__":
    app()
