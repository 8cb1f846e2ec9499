"""Opening a database URL: the engine, SQLite's PRAGMAs, and the transactions that read or write.

SQLite: the parent folder of the file is created; every connection gets ``journal_mode=WAL``,
``synchronous=NORMAL``, ``foreign_keys=ON`` and a busy timeout; SQLAlchemy, not the ``sqlite3``
module, emits ``BEGIN``, and a transaction opened by :func:`writing` is ``BEGIN IMMEDIATE`` so
two writers (threads or processes) queue on the busy timeout instead of failing half way.
Other dialects get a small connection pool with pre-ping and their own transaction handling.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
_WRITE_OPTION = "localai_store_write"
_TRUE = {"1", "true", "yes", "on"}


def describe(url: URL) -> str:
    """Where the store is, for messages: a SQLite file's path, or the URL without its password."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file a plain SQLite URL names; ``None`` for memory databases and ``file:`` URIs."""
    database = url.database
    uri = str(url.query.get("uri", "")).lower() in _TRUE
    if not database or database == ":memory:" or uri or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_engine(url: URL, pool_size: int, busy_timeout_s: float) -> Engine:
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
    busy_ms = max(0, int(busy_timeout_s * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()
        if str(mode).lower() not in ("wal", "memory"):
            logger.warning("the store at %s runs in journal mode %s, not WAL", describe(url), mode)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writes = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


def _server_engine(url: URL, pool_size: int, busy_timeout_s: float) -> Engine:
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True)


_ENGINES: dict[str, Callable[[URL, int, float], Engine]] = {"sqlite": _sqlite_engine}


def make_engine(url: URL, *, pool_size: int, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created (``OSError`` if it cannot be)."""
    factory = _ENGINES.get(url.get_backend_name(), _server_engine)
    return factory(url, pool_size, busy_timeout_s)


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection in a read transaction, rolled back at the end."""
    with engine.connect() as conn:
        yield conn


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (SQLite: ``BEGIN IMMEDIATE``), committed at the end."""
    with engine.connect() as conn:
        conn.execution_options(**{_WRITE_OPTION: True})
        with conn.begin():
            yield conn
