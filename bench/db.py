"""A fresh, migrated PostgreSQL database for a bench section (or BENCH_DATABASE_URL), dropped afterwards."""

from __future__ import annotations

import os
import uuid

import asyncpg

from shared.migrate import upgrade_async


async def fresh_database() -> tuple[str, str | None]:
    if os.environ.get("BENCH_DATABASE_URL"):
        return os.environ["BENCH_DATABASE_URL"], None
    name = f"lr_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    await upgrade_async(url)
    return url, name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()
