"""`leadrouter`: run the whole service on one machine, apply migrations, seed demo data."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import typer
from sqlalchemy import delete, select

from shared.broker import start_broker, stop_process
from shared.config import Settings
from shared.db import create_engine, session_factory
from shared.migrate import upgrade
from shared.models import DeadLetter, OutboxMessage, ProcessedEvent, utcnow
from shared.wakeup import OUTBOX_COMMITTED

app = typer.Typer(help="Leadrouter: lead routing for channel sales.", no_args_is_help=True)

VAR = Path("var")
TOKEN_FILE = VAR / "admin-token"
SECRET_KEY_FILE = VAR / "secret-key"
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


def _kept_secret(configured: str | None, path: Path, nbytes: int) -> str:
    """The configured value, else the one `make run` generated before (kept in var/), else a new one."""
    if configured:
        return configured
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value


def _admin_token(settings: Settings) -> str:
    return _kept_secret(settings.admin_token, TOKEN_FILE, 24)


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


def _spawn(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", module], env=env, start_new_session=True)


class Child:
    """A process `leadrouter up` keeps running: restarted with backoff when it dies, given up on when it
    keeps dying (more than MAX_CRASHES within CRASH_WINDOW_S)."""

    MAX_CRASHES, CRASH_WINDOW_S = 5, 60.0

    def __init__(self, name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self.name, self._start = name, start
        self.proc = start()
        self.crashes: list[float] = []
        self.restart_at: float | None = None
        typer.echo(f"started {name} (pid {self.proc.pid})")

    def check(self, now: float) -> None:
        """Restart a child that died, after its backoff; raise when it has crashed too often."""
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.proc, self.restart_at = self._start(), None
                typer.echo(f"restarted {self.name} (pid {self.proc.pid})", err=True)
            return
        code = self.proc.poll()
        if code is None:
            return
        self.crashes = [t for t in self.crashes if now - t < self.CRASH_WINDOW_S] + [now]
        if len(self.crashes) > self.MAX_CRASHES:
            raise RuntimeError(f"{self.name} crashed {len(self.crashes)} times within "
                               f"{self.CRASH_WINDOW_S:.0f}s; giving up")
        delay = min(0.5 * 2 ** (len(self.crashes) - 1), 10.0)
        self.restart_at = now + delay
        typer.echo(f"{self.name} (pid {self.proc.pid}) exited with code {code}; restarting it in {delay:.1f}s",
                   err=True)

    def stop(self) -> None:
        stop_process(self.proc)


def process_roles(settings: Settings) -> list[tuple[str, str, dict[str, str]]]:
    """`up`'s processes: (name, module, environment of its own). While the API routes on intake the router worker
    is nearly idle, so its outbox relay leads (PostgreSQL); otherwise the monitor's, by default. `up` decides
    this for each process: a `LEADROUTER_RELAY_PREFERRED` of the caller's is not passed on."""
    worker_leads = settings.route_on_intake
    return [("lead_router", "services.lead_router", {"LEADROUTER_RUN_ROUTER": "false",
                                                     "LEADROUTER_RELAY_PREFERRED": "false"}),
            ("router worker", "services.lead_router", {"LEADROUTER_ROUTER_PORT": str(settings.worker_port),
                                                       "LEADROUTER_RUN_ROUTER": "true",
                                                       "LEADROUTER_RELAY_PREFERRED": str(worker_leads).lower()}),
            ("sla_monitor", "services.sla_monitor", {"LEADROUTER_RELAY_PREFERRED": ""})]


@app.command()
def up() -> None:
    """Run everything on this machine: migrations, the bundled broker (unless LEADROUTER_KAFKA_BOOTSTRAP
    is set), lead_router and sla_monitor; seed demo data into an empty database. A process that dies is
    restarted (with backoff; the console says so); Ctrl-C, or one process crashing over and over, stops it
    all."""
    settings = Settings()
    token = _admin_token(settings)
    env = {**os.environ, "LEADROUTER_ADMIN_TOKEN": token, "LEADROUTER_DATABASE_URL": settings.database_url}
    # Encrypts the sources' secrets at rest; the one generated here stays in var/ with the database.
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    env["LEADROUTER_SECRET_KEY"] = _kept_secret(key, SECRET_KEY_FILE, 32)
    env.setdefault("LEADROUTER_WEBHOOK_ALLOW_PRIVATE", "true")  # make run: partner webhooks may point at this machine
    typer.echo(f"applying migrations to {settings.database_url}")
    upgrade(settings.database_url)
    children: list[Child] = []
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
            children.append(Child("the bundled broker", lambda: start_broker(settings.embedded_kafka_port,
                                                                              log_path=VAR / "broker.log")))
            env["LEADROUTER_KAFKA_BOOTSTRAP"] = settings.bootstrap
        if seed_demo(env):
            typer.echo("seeded demo partners and routing rules")
        for name, module, extra in process_roles(settings):
            children.append(Child(name, functools.partial(_spawn, module, {**env, **extra})))
        procs = [child.proc for child in children]
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        _wait_ready(f"http://{host}:{settings.router_port}/readyz", procs)
        _wait_ready(f"http://{host}:{settings.worker_port}/readyz", procs)
        _wait_ready(f"http://{host}:{settings.monitor_port}/readyz", procs)
        typer.echo(_banner(settings, token, host))
        while not stopping:
            now = time.monotonic()
            for child in children:
                child.check(now)
            time.sleep(0.2)
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        typer.echo("stopping")
        for child in reversed(children):
            child.stop()


dlq = typer.Typer(help="Dead letters: events a consumer gave up on (see LEADROUTER_CONSUMER_MAX_ATTEMPTS).",
                  no_args_is_help=True)
app.add_typer(dlq, name="dlq")


@dlq.command("list")
def dlq_list(all_: bool = typer.Option(False, "--all", help="Also the ones replayed already.")) -> None:
    """The parked events, oldest first: id, consumer, where it was, its type and id, and the error."""
    rows = asyncio.run(dead_letters(Settings(), include_replayed=all_))
    if not rows:
        typer.echo("no dead letters")
    for row in rows:
        replayed = f" replayed {row.replayed_at.isoformat()}" if row.replayed_at else ""
        typer.echo(f"{row.id}\t{row.consumer}\t{row.topic}[{row.partition}]@{row.offset}\t{row.type}\t{row.event_id}\t"
                   f"parked {row.parked_at.isoformat()} after {row.attempts} attempts{replayed}\n\t"
                   f"{row.error.splitlines()[-1] if row.error else ''}")


@dlq.command("replay")
def dlq_replay(ids: list[int] = typer.Argument(None, help="Dead letter ids; none with --all."),
               all_: bool = typer.Option(False, "--all", help="Every dead letter not replayed yet.")) -> None:
    """Publish parked events again to their topic (through the outbox): the consumer that gave up handles them
    once more (fix the cause first); consumers that handled them already skip them by their id."""
    if not ids and not all_:
        typer.echo("name dead letter ids, or --all", err=True)
        raise typer.Exit(2)
    count = asyncio.run(replay_dead_letters(Settings(), None if all_ else ids))
    typer.echo(f"replayed {count} dead letter(s)")


async def dead_letters(settings: Settings, *, include_replayed: bool = False) -> list[DeadLetter]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            query = select(DeadLetter).order_by(DeadLetter.id)
            if not include_replayed:
                query = query.where(DeadLetter.replayed_at.is_(None))
            return list((await session.scalars(query)).all())
    finally:
        await engine.dispose()


async def replay_dead_letters(settings: Settings, ids: list[int] | None) -> int:
    """Queue the dead letters `ids` (None: all open ones) for publication again, in one transaction."""
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            query = select(DeadLetter).where(DeadLetter.replayed_at.is_(None)).order_by(DeadLetter.id)
            if ids is not None:
                query = query.where(DeadLetter.id.in_(ids))
            rows = list((await session.scalars(query)).all())
            now = utcnow()
            for row in rows:
                if row.event_id:
                    await session.execute(delete(ProcessedEvent).where(
                        ProcessedEvent.consumer == row.consumer, ProcessedEvent.event_id == row.event_id))
                session.add(OutboxMessage(event_id=str(uuid.uuid4()), topic=row.topic, key=(row.key or "")[:64],
                                          type=row.type or "", payload=row.payload, created_at=now))
                row.replayed_at = now
            OUTBOX_COMMITTED.mark(session)  # on PostgreSQL the leading relay is told at commit
            return len(rows)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    app()
