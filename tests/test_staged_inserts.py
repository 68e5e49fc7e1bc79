"""`shared.db.stage_insert`: outbox events and timeline entries are written when their transaction commits,
one statement per table, after the ORM objects they refer to; a rollback (of the transaction, or of the
savepoint they were staged in) writes none of them. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db import stage_insert, stage_update, stage_upsert
from shared.models import Lead, LeadEvent, OutboxMessage, ProcessedEvent, utcnow
from shared.outbox import add_event
from tests.fixtures.databases import cleaned_sessions

TOPIC = "staged.leads"


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the shared test database; the rows these tests write are deleted afterwards (unsent outbox
    rows left behind would be published by the next test's relay)."""
    async with cleaned_sessions(
            db_url, delete(OutboxMessage).where(OutboxMessage.topic == TOPIC),
            delete(LeadEvent).where(LeadEvent.lead_id.in_(select(Lead.lead_id).where(Lead.source == "staged-test"))),
            delete(Lead).where(Lead.source == "staged-test")) as factory:
        yield factory


def new_lead() -> Lead:
    lead_id, now = str(uuid.uuid4()), utcnow()
    return Lead(lead_id=lead_id, source="staged-test", external_id=lead_id, status="received", company={}, contact={},
                created_at=now, updated_at=now)


async def events_of(sessions: async_sessionmaker[AsyncSession], subject: str) -> list[str]:
    async with sessions() as session:
        return list((await session.scalars(select(OutboxMessage.type).where(OutboxMessage.key == subject)
                                           .order_by(OutboxMessage.id))).all())


async def test_staged_rows_follow_the_objects_they_refer_to_in_one_statement(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """PostgreSQL: every table's rows and the relay's NOTIFY in one statement; SQLite: one per table."""
    from services.lead_router.lead import timeline
    from shared.config import Settings

    settings = Settings(topic_prefix="staged")
    assert settings.leads_topic == TOPIC
    lead = new_lead()
    statements: list[str] = []
    async with sessions() as session:
        engine = session.bind.sync_engine  # type: ignore[union-attr]
        postgres = engine.dialect.name == "postgresql"

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            if re.search(r"INSERT INTO (outbox|lead_events)|pg_notify", statement, re.I):
                statements.append(" ".join(statement.split()))

        event.listen(engine, "before_cursor_execute", count)
        try:
            async with session.begin():
                session.add(lead)  # pending: the timeline rows' foreign key needs it first
                for name in ("lead.received", "lead.routed", "lead.accepted"):
                    timeline.record(session, settings, lead, name)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    if postgres:  # this process leads no relay: its commits notify the leader's, in that same statement
        assert len(statements) == 1, statements
        assert re.match(r"WITH staged_0 AS \(INSERT INTO outbox .*\), staged_1 AS \(INSERT INTO lead_events .*\) "
                        r"SELECT pg_notify\(", statements[0])
        assert statements[0].count("), (") == 4  # three rows each
    else:
        assert [s.split()[2] for s in statements] == ["outbox", "lead_events"]
    assert await events_of(sessions, lead.lead_id) == ["leadrouter.lead.received", "leadrouter.lead.routed",
                                                       "leadrouter.lead.accepted"]
    async with sessions() as session:
        assert len((await session.scalars(select(LeadEvent).where(LeadEvent.lead_id == lead.lead_id))).all()) == 3


async def test_rows_of_one_table_that_set_different_columns_are_all_written_in_order(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        for n, name in enumerate(("a", "b", "c")):
            row = {"event_id": str(uuid.uuid4()), "topic": TOPIC, "key": subject, "type": name, "payload": b"{}",
                   "created_at": utcnow()}
            if n == 1:
                row["attempts"] = 0
            stage_insert(session, OutboxMessage, row)
    assert await events_of(sessions, subject) == ["a", "b", "c"]


async def test_a_rollback_writes_nothing_staged(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = str(uuid.uuid4())
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            add_event(session, topic=TOPIC, name="lead.activity", source="/test", subject=subject, data={})
            raise RuntimeError("the change fails")
    async with sessions() as session, session.begin():  # the same session factory, a later transaction
        add_event(session, topic=TOPIC, name="lead.updated", source="/test", subject=subject, data={})
    assert await events_of(sessions, subject) == ["leadrouter.lead.updated"]


async def test_a_savepoint_rolled_back_takes_its_events_with_it(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        add_event(session, topic=TOPIC, name="lead.received", source="/test", subject=subject, data={})
        try:
            async with session.begin_nested():
                add_event(session, topic=TOPIC, name="lead.routed", source="/test", subject=subject,
                          data={})
                raise RuntimeError("undo the savepoint")
        except RuntimeError:
            pass
        async with session.begin_nested():
            add_event(session, topic=TOPIC, name="lead.accepted", source="/test", subject=subject,
                      data={})
    assert await events_of(sessions, subject) == ["leadrouter.lead.received", "leadrouter.lead.accepted"]


async def test_a_savepoint_whose_flush_fails_keeps_what_was_staged_before_it(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """The way savepoints fail here (an insert meeting a unique key, caught, the transaction going on): the
    failed flush rolls back its own sub-transaction inside the savepoint, which is not a savepoint itself. The
    events staged before the savepoint are written at commit (they were all dropped), those staged in it not."""
    subject, key = str(uuid.uuid4()), str(uuid.uuid4())
    async with sessions() as session, session.begin():
        session.add(ProcessedEvent(consumer="staged-test", event_id=key))
    try:
        async with sessions() as session, session.begin():
            add_event(session, topic=TOPIC, name="lead.received", source="/test", subject=subject, data={})
            with pytest.raises(IntegrityError):
                async with session.begin_nested():
                    add_event(session, topic=TOPIC, name="lead.routed", source="/test", subject=subject, data={})
                    session.add(ProcessedEvent(consumer="staged-test", event_id=key))
                    await session.flush()
            add_event(session, topic=TOPIC, name="lead.accepted", source="/test", subject=subject, data={})
        assert await events_of(sessions, subject) == ["leadrouter.lead.received", "leadrouter.lead.accepted"]
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(ProcessedEvent).where(ProcessedEvent.consumer == "staged-test"))


async def test_a_transaction_closed_unfinished_leaves_nothing_for_the_next(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """A session closed with its transaction open (no commit, no rollback event) does not carry what that
    transaction staged into its next transaction."""
    subject = str(uuid.uuid4())
    session = sessions()
    await session.begin()
    add_event(session, topic=TOPIC, name="lead.received", source="/test", subject=subject, data={})
    await session.close()
    async with session.begin():
        add_event(session, topic=TOPIC, name="lead.accepted", source="/test", subject=subject, data={})
    await session.close()
    assert await events_of(sessions, subject) == ["leadrouter.lead.accepted"]


async def test_staged_updates_ride_with_the_inserts_and_the_last_of_a_row_wins(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """`stage_update`: the row changes at commit, in the statement of the staged inserts on PostgreSQL; a row
    staged twice ends as staged last; one staged in a savepoint rolled back is not written."""
    first, second, third = new_lead(), new_lead(), new_lead()
    async with sessions() as session, session.begin():
        session.add_all([first, second, third])
    statements: list[str] = []
    async with sessions() as session:
        engine = session.bind.sync_engine  # type: ignore[union-attr]

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(" ".join(statement.split()))

        event.listen(engine, "before_cursor_execute", count)
        try:
            async with session.begin():
                stage_update(session, Lead, "lead_id", {"lead_id": first.lead_id, "status": "offered",
                                                        "partner_id": "p1"})
                add_event(session, topic=TOPIC, name="lead.routed", source="/test", subject=first.lead_id, data={})
                stage_update(session, Lead, "lead_id", {"lead_id": second.lead_id, "status": "nurturing",
                                                        "partner_id": None})
                try:
                    async with session.begin_nested():
                        stage_update(session, Lead, "lead_id", {"lead_id": third.lead_id, "status": "offered",
                                                                "partner_id": "p9"})
                        raise RuntimeError("undo the savepoint")
                except RuntimeError:
                    pass
        finally:
            event.remove(engine, "before_cursor_execute", count)
        if engine.dialect.name == "postgresql":
            [staged] = [s for s in statements if "UPDATE leads" in s]
            assert staged.startswith("WITH staged_0 AS (UPDATE leads SET") and "INSERT INTO outbox" in staged
    async with sessions() as session:
        found = {lead.lead_id: (lead.status, lead.partner_id) for lead in (await session.scalars(
            select(Lead).where(Lead.lead_id.in_([first.lead_id, second.lead_id, third.lead_id])))).all()}
    assert found == {first.lead_id: ("offered", "p1"), second.lead_id: ("nurturing", None),
                     third.lead_id: ("received", None)}
    async with sessions() as session, session.begin():  # the same row twice: a statement each, in order
        stage_update(session, Lead, "lead_id", {"lead_id": first.lead_id, "status": "accepted", "partner_id": "p1"})
        stage_update(session, Lead, "lead_id", {"lead_id": first.lead_id, "status": "working", "partner_id": "p1"})
    async with sessions() as session:
        assert (await session.get(Lead, first.lead_id)).status == "working"  # type: ignore[union-attr]


async def test_staged_upserts_insert_or_update_by_key(sessions: async_sessionmaker[AsyncSession]) -> None:
    """`stage_upsert`: a new key is inserted, a known one updated; twice in one transaction, the last wins."""
    from shared.models import RoutingState

    rule = f"staged-{uuid.uuid4().hex[:8]}"
    try:
        for states in ([{"n": 1}], [{"n": 2}], [{"n": 3}, {"n": 4}]):
            async with sessions() as session, session.begin():
                for state in states:
                    stage_upsert(session, RoutingState, "rule", {"rule": rule, "state": state, "updated_at": utcnow()})
            async with sessions() as session:
                assert (await session.get(RoutingState, rule)).state == states[-1]  # type: ignore[union-attr]
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(RoutingState).where(RoutingState.rule == rule))


async def test_more_staged_rows_than_one_statement_takes_are_all_written_in_order(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """5,000 events in one transaction (35,000 parameters: asyncpg takes 32,767 in one statement): written,
    in order, with a statement per table."""
    subject = str(uuid.uuid4())
    async with sessions() as session, session.begin():
        for n in range(5_000):
            add_event(session, topic=TOPIC, name=f"lead.n{n}", source="/test", subject=subject, data={})
    assert await events_of(sessions, subject) == [f"leadrouter.lead.n{n}" for n in range(5_000)]


async def test_irregular_staged_rows_keep_what_each_row_sets(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Rows of one target that set different columns, a table under two targets (a row inserted and updated
    in one transaction), a row that carries only its key: each written as staged, nothing wiped."""
    from shared.models import RoutingState

    rule = f"staged-{uuid.uuid4().hex[:8]}"
    first, second = new_lead(), new_lead()
    try:
        async with sessions() as session, session.begin():
            session.add(first)
        async with sessions() as session, session.begin():
            stage_upsert(session, RoutingState, "rule", {"rule": rule, "state": {"n": 1}, "updated_at": utcnow()})
            stage_upsert(session, RoutingState, "rule", {"rule": rule, "updated_at": utcnow()})  # state untouched
            stage_update(session, Lead, "lead_id", {"lead_id": first.lead_id, "status": "offered", "partner_id": "p1"})
            stage_update(session, Lead, "lead_id", {"lead_id": first.lead_id, "status": "accepted"})
            stage_update(session, Lead, "lead_id", {"lead_id": first.lead_id})  # nothing to set
            row = {column.key: getattr(second, column.key) for column in Lead.__table__.columns}
            stage_insert(session, Lead, row)
            stage_update(session, Lead, "lead_id", {"lead_id": second.lead_id, "status": "nurturing"})
        async with sessions() as session:
            assert (await session.get(RoutingState, rule)).state == {"n": 1}  # type: ignore[union-attr]
            got = {lead.lead_id: (lead.status, lead.partner_id) for lead in (await session.scalars(
                select(Lead).where(Lead.lead_id.in_([first.lead_id, second.lead_id])))).all()}
        assert got == {first.lead_id: ("accepted", "p1"), second.lead_id: ("nurturing", None)}
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(RoutingState).where(RoutingState.rule == rule))


async def test_a_rolled_back_transaction_leaves_no_notification_behind(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """A savepoint's commit asks for the relay's NOTIFY; when the transaction then rolls back, the session's
    next transaction (with no event) notifies nothing."""
    notified: list[str] = []
    async with sessions() as session:
        engine = session.bind.sync_engine  # type: ignore[union-attr]

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            if "pg_notify" in statement:
                notified.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            with pytest.raises(RuntimeError):
                async with session.begin():
                    async with session.begin_nested():
                        add_event(session, topic=TOPIC, name="lead.activity", source="/test",
                                  subject=str(uuid.uuid4()), data={})
                    raise RuntimeError("the change fails")
            async with session.begin():
                await session.execute(select(Lead.lead_id).limit(1))
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert notified == []


async def test_past_the_size_of_one_statement_it_is_a_statement_per_table(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """300 leads' events and timeline rows, staged alternately (as routing does): two statements, not 600."""
    from services.lead_router.lead import timeline
    from shared.config import Settings

    settings = Settings(topic_prefix="staged")
    leads = [new_lead() for _ in range(300)]
    async with sessions() as session, session.begin():
        session.add_all(leads)
    statements: list[str] = []
    async with sessions() as session:
        engine = session.bind.sync_engine  # type: ignore[union-attr]

        def count(conn: object, cursor: object, statement: str, *args: object) -> None:
            if re.search(r"INSERT INTO (outbox|lead_events)", statement, re.I):
                statements.append(statement)

        event.listen(engine, "before_cursor_execute", count)
        try:
            async with session.begin():
                for lead in leads:
                    timeline.record(session, settings, lead, "lead.routed")
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 2
    assert await events_of(sessions, leads[-1].lead_id) == ["leadrouter.lead.routed"]
