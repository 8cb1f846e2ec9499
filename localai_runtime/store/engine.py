"""Opening a database URL: the engine, SQLite's PRAGMAs, and the transactions that read or write.

SQLite: the parent folder of the file is created; every connection gets ``journal_mode=WAL``,
``synchronous=NORMAL``, ``foreign_keys=ON`` and a busy timeout; SQLAlchemy, not the ``sqlite3``
module, emits ``BEGIN``, and a transaction opened by :func:`writing` is ``BEGIN IMMEDIATE`` so
two writers (threads or processes) queue on the busy timeout instead of failing half way.

PostgreSQL: ``postgresql://`` (and ``postgres://``) mean psycopg 3 (``postgresql+psycopg://``),
never psycopg2, whatever SQLAlchemy's default driver; connections time out after
:data:`CONNECT_TIMEOUT_S` and name themselves ``localai-runtime`` in ``pg_stat_activity``, unless
the URL's query says otherwise. Server databases get a pool of ``pool_size`` connections (one
per worker thread, no overflow) with pre-ping, and their own transaction handling.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}
_POSTGRES_DEFAULTS = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": "localai-runtime"}
_WRITE_OPTION = "localai_store_write"
_TRUE = {"1", "true", "yes", "on"}


def resolve(url: URL) -> URL:
    """``url`` with the driver this store uses where the URL names none (PostgreSQL: psycopg 3)."""
    driver = _DRIVERS.get(url.drivername)
    return url if driver is None else url.set(drivername=driver)


def passwords(url: URL) -> list[str]:
    """The passwords in ``url``: its own, and query values such as libpq's ``password``."""
    found = [] if url.password is None else [str(url.password)]
    for key, value in url.query.items():
        if "password" in key.lower():
            found += [value] if isinstance(value, str) else list(value)
    return [password for password in found if password]


def describe(url: URL) -> str:
    """Where the store is, for messages: a SQLite file's path, or the URL without its passwords."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    hidden = {key: "***" for key in url.query if "password" in key.lower()}
    return url.update_query_dict(hidden).render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file a plain SQLite URL names; ``None`` for memory databases and ``file:`` URIs."""
    database = url.database
    uri = str(url.query.get("uri", "")).lower() in _TRUE
    if not database or database == ":memory:" or uri or database.startswith("file:"):
        return None
    return Path(database)


def _wal(cursor: Any, busy_timeout_s: float) -> str:
    """``PRAGMA journal_mode = WAL``, retried until the busy timeout: while another process turns
    a new file to WAL, SQLite answers "database is locked" at once, without its busy handler."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            return cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


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
            mode = _wal(cursor, busy_timeout_s)
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


def _postgres_engine(url: URL, pool_size: int, busy_timeout_s: float) -> Engine:
    """A server engine; the URL's query wins over :data:`_POSTGRES_DEFAULTS` (SQLAlchemy would
    let ``connect_args`` win)."""
    defaults = {key: value for key, value in _POSTGRES_DEFAULTS.items() if key not in url.query}
    return create_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True, connect_args=defaults)


_ENGINES: dict[str, Callable[[URL, int, float], Engine]] = {"sqlite": _sqlite_engine, "postgresql": _postgres_engine}


def make_engine(url: URL, *, pool_size: int, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Engine:
    """An engine for ``url`` (see :func:`resolve`); a SQLite file's folder is created (``OSError``
    if it cannot be)."""
    url = resolve(url)
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
