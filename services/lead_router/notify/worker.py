"""The delivery worker: sends staged notifications, at least once, from any number of processes.

Claiming: a round locks the due pending rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so two workers never
take the same row; SQLite serializes writers), gives each a claim token and moves its `next_attempt_at` to
the end of a lease, and commits before anything is sent. A worker that dies mid-send leaves the row to come
due again when the lease ends, and another worker sends it (receivers deduplicate on `webhook-id`, the
delivery id). The result is written under the row lock and only onto a pending row: a delivery is marked
`delivered` once, and a failure reschedules it only while the claim is still the writer's.

Backoff: full jitter, `uniform(0, min(max, base * 2**(attempts-1)))`, or exactly what `Retry-After` asks
(seconds or an HTTP date); a retry that would come after `give_up_at` (24 hours after staging) makes the
delivery `failed`. The schedule is a column, not a sleeping loop, so it survives restarts; hence no
tenacity/stamina here. 2xx: delivered. 410: the partner's webhook is turned off, this delivery and its other
pending ones become `disabled`. Only http/https URLs; unless `webhook_allow_private`, a host that resolves to
a loopback, private, link-local (or otherwise non-public) address is refused before connecting, the refusal
recorded as the attempt's error.

Bounded: at most `delivery_concurrency` sends in flight per process and `delivery_per_partner` per partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from services.lead_router.notify.repository import DELIVERED, DISABLED, FAILED, PENDING, DeliveryRepository
from services.lead_router.notify.service import DELIVERY_STAGED, signing_secret
from shared.config import Settings
from shared.crypto import SecretKeyMissing, SecretUnreadable
from shared.db import unit_of_work
from shared.events import CONTENT_TYPE
from shared.models import Partner, WebhookAttempt, utcnow

log = logging.getLogger(__name__)

GONE_ERROR = "the partner's webhook answered 410 Gone; it is off until its webhook_url is set again"
OFF_ERROR = "the partner's webhook is off (it answered 410 Gone)"


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    partner_id: str
    token: str
    url: str
    secret: str | None
    body: str


@dataclass(frozen=True)
class Outcome:
    kind: str  # delivered | gone | http_error | transport_error | refused | unsigned
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


def backoff_s(attempts: int, settings: Settings) -> float:
    """Full jitter: anywhere between 0 and the exponential ceiling for this attempt."""
    ceiling = min(settings.delivery_backoff_max_s, settings.delivery_backoff_base_s * 2 ** min(attempts - 1, 40))
    return random.uniform(0, ceiling)  # jitter, not a secret


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _not_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified)


async def address_refusal(url: str, *, allow_private: bool, timeout_s: float = 5.0) -> Outcome | None:
    """Why `url` must not be called (scheme, or an address that is not public), or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Outcome("refused", error=f"refused: only http and https URLs are called, not {url[:100]!r}")
    if allow_private:
        return None
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                       timeout_s)
    except (OSError, ValueError, TimeoutError) as exc:
        return Outcome("transport_error", error=f"cannot resolve {host}: {exc or 'timed out'}")
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if _not_public(ip):
            return Outcome("refused", error=(f"refused: {host} resolves to {ip}, a loopback, private or link-local "
                                             "address (LEADROUTER_WEBHOOK_ALLOW_PRIVATE is off)"))
    return None


class DeliveryWorker:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, *,
                 attempts_counter: Any = None) -> None:
        self.sessions = sessions
        self.settings = settings
        self.attempts_counter = attempts_counter  # prometheus Counter labelled by outcome, or None
        self.busy: Tally[str] = Tally()  # sends in flight per partner, in this process
        self.in_flight: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            s = self.settings
            self._client = httpx.AsyncClient(
                follow_redirects=False, trust_env=False,
                timeout=httpx.Timeout(s.delivery_timeout_s, connect=s.delivery_connect_timeout_s),
                limits=httpx.Limits(max_connections=s.delivery_concurrency,
                                    max_keepalive_connections=s.delivery_concurrency))
        return self._client

    async def close(self) -> None:
        for task in list(self.in_flight):
            task.cancel()
        for task in list(self.in_flight):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def claim(self, limit: int) -> list[Claim]:
        """Take up to `limit` due deliveries (within the per-partner cap) and commit the lease on them."""
        if limit <= 0:
            return []
        now = utcnow()
        lease_until = now + timedelta(seconds=self.settings.delivery_lease_s)
        claims: list[Claim] = []
        busy = Tally(self.busy)
        async with unit_of_work(self.sessions) as session:
            repo = DeliveryRepository(session)
            rows = await repo.due(now, limit=limit * 4)
            partners = await repo.partners(d.partner_id for d in rows)
            for delivery in rows:
                partner = partners.get(delivery.partner_id)
                if partner is None or not partner.webhook_url or partner.webhook_enabled is False:
                    delivery.status, delivery.next_attempt_at, delivery.claim_token = DISABLED, None, None
                    has_url = partner is not None and bool(partner.webhook_url)
                    delivery.last_error = OFF_ERROR if has_url else "the partner has no webhook_url"
                    continue
                if len(claims) >= limit or busy[delivery.partner_id] >= self.settings.delivery_per_partner:
                    continue  # left for the next round (the lock ends with this transaction)
                busy[delivery.partner_id] += 1
                delivery.claim_token = str(uuid.uuid4())
                delivery.next_attempt_at = lease_until
                claims.append(Claim(delivery_id=delivery.delivery_id, partner_id=delivery.partner_id,
                                    token=delivery.claim_token, url=partner.webhook_url,
                                    secret=partner.webhook_secret, body=orjson.dumps(delivery.payload).decode()))
        return claims

    async def send(self, claim: Claim) -> Outcome:
        refusal = await address_refusal(claim.url, allow_private=self.settings.webhook_allow_private,
                                        timeout_s=self.settings.delivery_connect_timeout_s)
        if refusal is not None:
            return refusal
        try:
            secret = signing_secret(self.settings, claim.secret)
        except (SecretUnreadable, SecretKeyMissing):
            return Outcome("unsigned", error=("not sent: the partner's signing secret cannot be decrypted with "
                                              "LEADROUTER_SECRET_KEY; make a new one "
                                              "(POST /v1/partners/{partner_id}/webhook-secret)"))
        if not secret:
            return Outcome("unsigned", error=("not sent: the partner has no signing secret yet "
                                              "(POST /v1/partners/{partner_id}/webhook-secret)"))
        at = utcnow()
        headers = {"content-type": CONTENT_TYPE, "webhook-id": claim.delivery_id,
                   "webhook-timestamp": str(int(at.timestamp())),
                   "webhook-signature": Webhook(secret).sign(claim.delivery_id, at, claim.body),
                   "user-agent": "leadrouter-webhooks/1"}
        try:
            async with self.client().stream("POST", claim.url, content=claim.body.encode(),
                                            headers=headers) as response:
                code = response.status_code  # the body is never read: a partner cannot make us buffer it
                retry_after = retry_after_s(response.headers.get("retry-after"), utcnow())
        except httpx.HTTPError as exc:
            return Outcome("transport_error", error=f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
        if 200 <= code < 300:
            return Outcome("delivered", status_code=code)
        if code == 410:
            return Outcome("gone", status_code=code, error=GONE_ERROR)
        return Outcome("http_error", status_code=code, error=f"HTTP {code}", retry_after_s=retry_after)

    async def deliver(self, claim: Claim) -> Outcome:
        """Send one claimed delivery and record the attempt."""
        started, clock = utcnow(), time.monotonic()
        try:
            outcome = await self.send(claim)
        except Exception as exc:  # noqa: BLE001 - recorded as the attempt's error, retried with backoff
            log.exception("webhook delivery %s failed unexpectedly", claim.delivery_id)
            outcome = Outcome("transport_error", error=f"{type(exc).__name__}: {exc}"[:500])
        duration_ms = int((time.monotonic() - clock) * 1000)
        await self.record(claim, outcome, started=started, duration_ms=duration_ms)
        if self.attempts_counter is not None:
            self.attempts_counter.labels(outcome.kind).inc()
        return outcome

    async def record(self, claim: Claim, outcome: Outcome, *, started: datetime, duration_ms: int) -> None:
        now = utcnow()
        async with unit_of_work(self.sessions) as session:
            session.add(WebhookAttempt(delivery_id=claim.delivery_id, at=started, status_code=outcome.status_code,
                                       error=outcome.error, duration_ms=duration_ms))
            repo = DeliveryRepository(session)
            if outcome.kind == "gone":
                partner = await session.get(Partner, claim.partner_id, with_for_update=True)
                if partner is not None:
                    partner.webhook_enabled = False
            delivery = await repo.lock(claim.delivery_id)
            if delivery is None:
                return
            delivery.attempts += 1
            if delivery.status != PENDING:
                return  # delivered or disabled meanwhile (a worker whose lease ended): logged, nothing else changes
            delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
            if outcome.kind == "delivered":
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = DELIVERED, now, None
                delivery.claim_token = None
            elif outcome.kind == "gone":
                delivery.status, delivery.next_attempt_at, delivery.claim_token = DISABLED, None, None
                await session.flush()
                await repo.disable_pending(claim.partner_id, error=OFF_ERROR)
            elif delivery.claim_token == claim.token:  # still ours: schedule the next try, or give up
                delay = (outcome.retry_after_s if outcome.retry_after_s is not None
                         else backoff_s(delivery.attempts, self.settings))
                due = now + timedelta(seconds=delay)
                delivery.claim_token = None
                if due > delivery.give_up_at:
                    delivery.status, delivery.next_attempt_at = FAILED, None
                else:
                    delivery.next_attempt_at = due

    async def _deliver_tracked(self, claim: Claim) -> None:
        try:
            await self.deliver(claim)
        except Exception:  # the database failed while recording: the lease ends and the row comes due again
            log.exception("recording webhook delivery %s failed", claim.delivery_id)
        finally:
            self.busy[claim.partner_id] -= 1
            if self.busy[claim.partner_id] <= 0:
                del self.busy[claim.partner_id]

    def _start(self, claims: list[Claim]) -> list[asyncio.Task[None]]:
        tasks = []
        for claim in claims:
            self.busy[claim.partner_id] += 1
            task = asyncio.create_task(self._deliver_tracked(claim), name=f"webhook-{claim.delivery_id}")
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
            tasks.append(task)
        return tasks

    async def run_once(self) -> int:
        """One round: claim what is due and send it all, waiting for the results (tests, tools)."""
        claims = await self.claim(self.settings.delivery_concurrency - len(self.in_flight))
        tasks = self._start(claims)
        if tasks:
            await asyncio.wait(tasks)
        return len(claims)

    async def run(self) -> None:
        """For ever: keep up to `delivery_concurrency` sends in flight. Deliveries staged by this process (the
        router worker routes and sends) wake it at their commit; the poll finds the rest (retries coming due,
        deliveries staged by other processes)."""
        poll = self.settings.delivery_poll_interval_s
        try:
            while True:
                free = self.settings.delivery_concurrency - len(self.in_flight)
                try:
                    claims = await self.claim(free)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("claiming webhook deliveries failed; trying again in %.1fs", poll)
                    claims = []
                self._start(claims)
                if not claims or len(self.in_flight) >= self.settings.delivery_concurrency:
                    if self.in_flight:
                        await asyncio.wait(set(self.in_flight), timeout=poll, return_when=asyncio.FIRST_COMPLETED)
                    else:  # until a delivery staged in this process commits, or the next poll
                        await DELIVERY_STAGED.wait(poll)
        finally:
            await self.close()
