"""The store's tables, and the versioned migrations that create and change them.

``localai_schema_version`` holds a row per migration applied (its number); the schema version
is the highest. :func:`migrate` applies the pending ones in one write transaction (SQLite:
``BEGIN IMMEDIATE``; PostgreSQL: a transaction-scoped advisory lock, which DDL needs there:
two sessions creating one table at once fail), re-reading the version once it holds the lock,
so replicas starting at once on a fresh database migrate it once, and the others wait, then
find it done. A database newer than this code is refused. A new migration is appended to
:data:`MIGRATIONS`; a released one is never edited (when a later migration alters a table,
freeze migration 1's DDL here first).

Ids are ``VARCHAR(128)`` on SQLite, which does not enforce the length, and ``TEXT`` on
PostgreSQL, which would: client-chosen item ids are kept as given on both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine

from localai_runtime.store.engine import describe, reading, writing
from localai_runtime.store.records import StoreError

logger = logging.getLogger(__name__)

ID = String(128).with_variant(Text(), "postgresql")

metadata = MetaData()

schema_version = Table("localai_schema_version", metadata, Column("version", Integer, nullable=False))

responses = Table(
    "localai_responses",
    metadata,
    Column("id", ID, primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("updated_at", Float, nullable=False),
    Column("model", String(256), nullable=False),
    Column("status", String(32), nullable=False),
    Column("previous_response_id", ID, nullable=True, index=True),
    Column("conversation_id", ID, nullable=True, index=True),
    Column("response", Text, nullable=False),  # JSON: the full response object
    Column("input_items", Text, nullable=False),  # JSON: the request's input items
)

conversations = Table(
    "localai_conversations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("updated_at", Float, nullable=False),
    Column("metadata", Text, nullable=True),  # JSON object, or NULL
)

conversation_items = Table(
    "localai_conversation_items",
    metadata,
    Column(
        "conversation_id",
        ID,
        ForeignKey("localai_conversations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("id", ID, nullable=False),
    Column("item", Text, nullable=False),  # JSON: the item, with its "id"
    Column("created_at", Float, nullable=False),
    UniqueConstraint("conversation_id", "id", name="uq_localai_conversation_items_id"),
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, tables=[responses, conversations, conversation_items], checkfirst=False)


MIGRATIONS: list[Callable[[Connection], None]] = [_create_tables]
SCHEMA_VERSION = len(MIGRATIONS)

MIGRATION_LOCK_KEY = 0x10CA1A1
"""PostgreSQL's advisory lock around migrations: one constant shared by every localai-runtime."""


def _pg_lock(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


def _no_lock(conn: Connection) -> None:
    """SQLite: ``BEGIN IMMEDIATE`` (see :func:`~localai_runtime.store.engine.writing`) is the lock."""


_LOCKS: dict[str, Callable[[Connection], None]] = {"postgresql": _pg_lock}


def current_version(conn: Connection) -> int:
    """The schema version of the database; 0 for an empty one."""
    if not inspect(conn).has_table(schema_version.name):
        return 0
    return max(conn.execute(select(schema_version.c.version)).scalars().all(), default=0)


def _check(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store at {where} has schema version {version}, but this localai-runtime knows "
            f"versions up to {SCHEMA_VERSION}; upgrade localai-runtime or use another data directory"
        )


def migrate(engine: Engine) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; returns it. Up to date: only reads."""
    where = describe(engine.url)
    with reading(engine) as conn:
        version = current_version(conn)
    _check(version, where)
    if version == SCHEMA_VERSION:
        return version
    with writing(engine) as conn:
        _LOCKS.get(conn.dialect.name, _no_lock)(conn)
        version = current_version(conn)  # another process may have migrated meanwhile
        _check(version, where)
        if version == SCHEMA_VERSION:
            return version
        schema_version.create(conn, checkfirst=True)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            logger.info("store at %s: applying migration %d", where, number)
            MIGRATIONS[number - 1](conn)
        conn.execute(insert(schema_version), [{"version": n} for n in range(version + 1, SCHEMA_VERSION + 1)])
    logger.info("store at %s migrated from schema version %d to %d", where, version, SCHEMA_VERSION)
    return SCHEMA_VERSION
