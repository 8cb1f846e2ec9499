"""The durable store: stored responses (``previous_response_id``, ``GET /responses/{id}``) and
conversations with their items, kept in one SQL database through SQLAlchemy Core.

- ``records``: what the store hands out and raises (:class:`ResponseRecord`,
  :class:`StoreError`, :class:`MissingResponse`);
- ``engine``: opening a database URL (SQLite PRAGMAs, PostgreSQL through psycopg 3, transactions
  that write);
- ``schema``: the tables and the versioned migrations;
- ``responses``, ``conversations``, ``paging``, ``retention``: the queries, run in a worker thread;
- ``database``: :class:`Store`, the async API, which runs every query off the event loop.

Serving code and the app factory may import this package. It imports nothing from
:mod:`localai_runtime` except :mod:`localai_runtime.errors`, and never a web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from localai_runtime.store.records import MissingResponse, ResponseRecord, StoreError

if TYPE_CHECKING:
    from localai_runtime.store.database import Store
    from localai_runtime.store.schema import SCHEMA_VERSION, migrate

__all__ = ["SCHEMA_VERSION", "MissingResponse", "ResponseRecord", "Store", "StoreError", "migrate"]

_LAZY = {"Store": "database", "SCHEMA_VERSION": "schema", "migrate": "schema"}


def __getattr__(name: str) -> Any:
    """What needs SQLAlchemy, imported on first use (so never with --no-store)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
