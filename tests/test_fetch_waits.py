"""Consumers on the path from webhook to offer wait `kafka_fetch_max_wait_ms` for records; the others wait
longer (`kafka_background_fetch_max_wait_ms`) and for more bytes (`kafka_background_fetch_min_bytes`), so they
poll the broker less and get bigger batches."""

from __future__ import annotations

from services.sla_monitor.consumer import monitor_consumer
from shared.config import Settings
from shared.db import create_engine, session_factory
from shared.kafka import make_consumer


async def test_background_consumers_wait_longer_and_never_shorter() -> None:
    settings = Settings(kafka_fetch_max_wait_ms=10, kafka_background_fetch_max_wait_ms=100)
    assert make_consumer(settings, "t", group_id="g")._fetch_max_wait_ms == 10
    assert make_consumer(settings, "t", group_id="g", background=True)._fetch_max_wait_ms == 100
    # Those no person waits on (SLA clocks, recalls) also wait for a batch: the broker answers once this many
    # bytes wait (or the wait ends); the router's (rejections go to the next partner through it) does not.
    assert make_consumer(settings, "t", group_id="g")._fetch_min_bytes == 1
    assert make_consumer(settings, "t", group_id="g", background=True)._fetch_min_bytes == 1
    gathering = make_consumer(settings, "t", group_id="g", gather=True)
    assert (gathering._fetch_min_bytes, gathering._fetch_max_wait_ms) == (65_536, 100)
    kafka = Settings(kafka_fetch_max_wait_ms=500, kafka_background_fetch_max_wait_ms=100)  # docker-compose's
    assert make_consumer(kafka, "t", group_id="g", background=True)._fetch_max_wait_ms == 500


async def test_the_sla_monitor_consumes_in_the_background(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        assert monitor_consumer(Settings(database_url=sqlite_url), session_factory(engine)).gather
    finally:
        await engine.dispose()
