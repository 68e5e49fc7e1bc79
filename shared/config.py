"""One settings object for both services, read from `LEADROUTER_*` environment variables."""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from standardwebhooks import Webhook

WEBHOOK_SECRET_PREFIX = "LEADROUTER_WEBHOOK_SECRET_"


def known_zone(value: str) -> str:
    """`value` if it names an IANA time zone, else a ValueError a pydantic validator reports."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


def webhook_secret_problem(value: str) -> str | None:
    """What is wrong with a Standard Webhooks secret (`whsec_` and at least 16 bytes of base64), or None."""
    if not value.startswith("whsec_"):
        return "it must start with whsec_"
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return "what follows whsec_ is not base64"
    if len(key) < 16:
        return "the key is shorter than 16 bytes"
    try:
        Webhook(value)
    except Exception as exc:  # noqa: BLE001 - the library raises several kinds
        return str(exc)
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADROUTER_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./var/leadrouter.db"
    database_pool_size: int = Field(default=10, ge=1)

    # Kafka. Unset bootstrap under `leadrouter up` means: start the bundled broker.
    kafka_bootstrap: str | None = None
    embedded_kafka_port: int = 19092
    topic_prefix: str = "leadrouter"
    topic_partitions: int = Field(default=6, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    # Apache Kafka supports the idempotent producer; the bundled broker does not.
    kafka_idempotent_producer: bool = False
    # How long a fetch may wait for records. The bundled broker holds a fetch for the whole wait even when
    # records arrive (measured: 10 / 100 / 500 ms gave a delivery p50 of 4 / 15 / 130 ms), so the consumers on
    # the path to an offer poll it every 10 ms (~0.1 of a core for the broker while idle). Apache Kafka
    # answers as soon as records arrive: use 500 there (docker-compose.yml does).
    kafka_fetch_max_wait_ms: int = Field(default=10, ge=1)
    # The same for the consumers off the path from webhook to offer (the SLA monitor's, the recall consumer,
    # the ops page's alert feed, and the router's while the API routes on intake): a longer wait polls the
    # broker less while idle and hands them bigger batches (one transaction each) under load. Never shorter
    # than `kafka_fetch_max_wait_ms`.
    kafka_background_fetch_max_wait_ms: int = Field(default=100, ge=1)
    # What the SLA monitor's and the recall consumer's fetches wait for besides (no person waits on their
    # records; not the router's, whose rejections reach the next partner, nor the alert feed's): the broker
    # answers once this many bytes are waiting, or after the wait above. With 1, a consumer that kept up took a
    # few records a batch, each batch a transaction and an offset commit; with more, a batch a wait under load.
    kafka_background_fetch_min_bytes: int = Field(default=65_536, ge=1)
    # A consumer that stops heartbeating is out of its group after this long; the bundled broker also
    # waits half of it for members to join a rebalance, so it is how long a first assignment takes there.
    kafka_session_timeout_ms: int = Field(default=10_000, ge=1_000, le=300_000)

    host: str = "127.0.0.1"
    router_port: int = 8000
    monitor_port: int = 8001
    # `leadrouter up` runs the router worker (consumer, reconciler, relay) as a second lead_router
    # process on this port, so routing never queues behind HTTP requests in one event loop.
    worker_port: int = 8002
    admin_token: str | None = None

    # Which background parts a lead_router process runs (all by default; split them to scale).
    run_relay: bool = True
    run_router: bool = True
    # A lead_router process routes the leads its intake has just stored, right after their commit, instead
    # of leaving them for the router that consumes their `lead.received` event (which still routes any it
    # missed). Off: every lead waits for its event.
    route_on_intake: bool = True
    # PostgreSQL: which process's outbox relay publishes every process's events (one leads, the others stand by
    # and take over when it stops). `true` outranks the SLA monitor, which leads when no process says `true`;
    # `false` (and every lead_router process by default) leads only when no monitor runs; unset or empty: the
    # process's default. `leadrouter up` says `true` on its router worker, which is nearly idle while the API
    # routes on intake (the monitor's event loop also runs its consumer's batches, and events waited behind
    # them). Never on a process that serves intake: a relay there delays its queries.
    relay_preferred: bool | None = None
    relay_poll_interval_s: float = Field(default=0.2, gt=0)
    relay_batch_size: int = Field(default=500, ge=1)
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    reconcile_grace_s: float = Field(default=10.0, ge=0)
    # A broker that lost acknowledged events (the bundled one restarted): publish again what was sent since
    # this long before it was last seen whole (consumers skip what they handled already).
    replay_margin_s: float = Field(default=300.0, ge=0)
    # A consumer tries an event this many times (with backoff) before parking it as a dead letter.
    consumer_max_attempts: int = Field(default=5, ge=1)

    # Partner notifications (services/lead_router/notify): the delivery worker runs where leads are routed (the
    # router worker, and an API process routing on intake), so the process that made an offer sends it at once.
    # Private, loopback and link-local webhook addresses are refused unless allowed (make run: allow them).
    webhook_allow_private: bool = False
    delivery_concurrency: int = Field(default=32, ge=1)
    delivery_per_partner: int = Field(default=4, ge=1)
    delivery_connect_timeout_s: float = Field(default=5.0, gt=0)
    delivery_timeout_s: float = Field(default=10.0, gt=0)
    delivery_give_up_s: float = Field(default=86400.0, ge=0)
    delivery_backoff_base_s: float = Field(default=5.0, gt=0)
    delivery_backoff_max_s: float = Field(default=3600.0, gt=0)
    delivery_poll_interval_s: float = Field(default=1.0, gt=0)
    # How long a claimed delivery is held by its worker before another may take it (a worker that died).
    delivery_lease_s: float = Field(default=60.0, gt=0)

    max_body_bytes: int = 256 * 1024
    # Encrypts the secrets kept at rest (sources' HMAC secrets). Any long random string; several, comma
    # separated, rotate it: the first encrypts, all decrypt. `make run` generates one into var/secret-key.
    secret_key: SecretStr | None = None
    # How long a process reuses the configured sources it read before reading them again (a change made
    # through another process is seen after at most this long; one made through this process at once).
    source_refresh_s: float = Field(default=2.0, ge=0)
    # A webhook source with no secret configured: `accept` it (make run, trying things out) or `reject` it
    # with 404 (production: nobody may post leads under a made-up source name).
    unconfigured_sources: Literal["accept", "reject"] = "accept"
    fiscal_year_start_month: int = Field(default=1, ge=1, le=12)
    # Metrics: the vendor's calendar (months and vendor quarters start at midnight here), the strength of
    # the prior each score part is shrunk toward its tier, and for the `performance` strategy the window of
    # history it scores (days back from now) and how long a computed scorecard is reused (0: never).
    vendor_timezone: str = "UTC"
    score_prior_strength: float = Field(default=10.0, gt=0)
    performance_window_days: int = Field(default=90, ge=1)
    performance_refresh_s: float = Field(default=30.0, ge=0)
    # Where lead_router reaches sla_monitor: the ops page's alert list, acknowledge and live stream are
    # proxied through lead_router (one origin for the browser). Unset: http://127.0.0.1:<monitor_port>.
    monitor_url: str | None = None
    log_level: str = "info"

    # sla_monitor: its Kafka parts (consumer of leads/partners + its outbox relay) and its deadline scheduler
    # can be switched off (in-process API tests drive handlers and the scheduler themselves).
    sla_run_kafka: bool = True
    sla_run_scheduler: bool = True
    sla_scheduler_max_sleep_s: float = Field(default=30.0, gt=0)
    sla_stream_keepalive_s: float = Field(default=15.0, gt=0)

    @field_validator("relay_preferred", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vendor_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return known_zone(value)

    @field_validator("kafka_bootstrap", "admin_token", "monitor_url", "secret_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _webhook_secrets(self) -> Settings:
        """A malformed `LEADROUTER_WEBHOOK_SECRET_<SOURCE>` stops the start naming the variable, instead of
        failing every webhook of that source later."""
        for name, value in os.environ.items():
            if name.startswith(WEBHOOK_SECRET_PREFIX) and value:
                problem = webhook_secret_problem(value)
                if problem:
                    raise ValueError(f"{name} is not a Standard Webhooks secret (whsec_<base64>): {problem}")
        return self

    @property
    def monitor_base_url(self) -> str:
        return (self.monitor_url or f"http://127.0.0.1:{self.monitor_port}").rstrip("/")

    @property
    def background_fetch_wait_ms(self) -> int:
        return max(self.kafka_fetch_max_wait_ms, self.kafka_background_fetch_max_wait_ms)

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.embedded_kafka_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def leads_topic(self) -> str:
        return self.topic("leads")

    @property
    def sla_topic(self) -> str:
        return self.topic("sla")

    @property
    def partners_topic(self) -> str:
        return self.topic("partners")

    @property
    def dlq_topic(self) -> str:
        return self.topic("dlq")

    def webhook_secret(self, source: str) -> str | None:
        """`LEADROUTER_WEBHOOK_SECRET_<SOURCE>`: read live so a secret can be given per source."""
        name = WEBHOOK_SECRET_PREFIX + source.upper().replace("-", "_")
        return os.environ.get(name) or None


@lru_cache
def get_settings() -> Settings:
    return Settings()
