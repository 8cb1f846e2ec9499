"""Stored responses: one row per response, its request's input items beside it (worker thread).

Storing a response replaces the row with its id: an upsert on PostgreSQL, where replicas write
at once; an update, else an insert, on SQLite, whose ``BEGIN IMMEDIATE`` serialises writers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine, Row

from localai_runtime.store.conversations import append_items
from localai_runtime.store.engine import reading, writing
from localai_runtime.store.jsontext import dumps, loads
from localai_runtime.store.paging import page
from localai_runtime.store.records import MissingResponse, ResponseRecord, StoreError
from localai_runtime.store.schema import responses

logger = logging.getLogger(__name__)


def _record(row: Row[Any]) -> ResponseRecord:
    return ResponseRecord(
        id=row.id,
        created_at=row.created_at,
        model=row.model,
        status=row.status,
        response=loads(row.response, f"response {row.id!r}"),
        input_items=loads(row.input_items, f"input items of response {row.id!r}"),
        previous_response_id=row.previous_response_id,
        conversation_id=row.conversation_id,
    )


def _update_or_insert(conn: Connection, response_id: str, values: dict[str, Any]) -> None:
    """Race-free where writers serialise (SQLite's ``BEGIN IMMEDIATE``)."""
    if not conn.execute(update(responses).where(responses.c.id == response_id).values(**values)).rowcount:
        conn.execute(insert(responses).values(id=response_id, **values))


def _postgres_upsert(conn: Connection, response_id: str, values: dict[str, Any]) -> None:
    """``INSERT ... ON CONFLICT DO UPDATE``: two replicas storing one new id never collide."""
    statement = postgresql.insert(responses).values(id=response_id, **values)
    conn.execute(statement.on_conflict_do_update(index_elements=[responses.c.id], set_=values))


_UPSERTS: dict[str, Callable[[Connection, str, dict[str, Any]], None]] = {"postgresql": _postgres_upsert}


def put_response(engine: Engine, record: ResponseRecord, appended: list[dict] | None = None) -> bool:
    """Insert ``record``, or replace the stored response with its id; with ``appended``, add those
    items to its conversation in the same transaction (both or neither are stored: ``False``, and
    nothing written, when the conversation is gone)."""
    values = {
        "created_at": record.created_at,
        "updated_at": time.time(),
        "model": record.model,
        "status": record.status,
        "previous_response_id": record.previous_response_id,
        "conversation_id": record.conversation_id,
        "response": dumps(record.response),
        "input_items": dumps(record.input_items),
    }
    with writing(engine) as conn:
        if appended is not None and not append_items(conn, str(record.conversation_id), appended):
            return False
        _UPSERTS.get(conn.dialect.name, _update_or_insert)(conn, record.id, values)
    return True


def get_response(engine: Engine, response_id: str) -> ResponseRecord | None:
    with reading(engine) as conn:
        row = conn.execute(select(responses).where(responses.c.id == response_id)).first()
    return None if row is None else _record(row)


def delete_response(engine: Engine, response_id: str) -> bool:
    with writing(engine) as conn:
        return conn.execute(delete(responses).where(responses.c.id == response_id)).rowcount > 0


def chain(engine: Engine, response_id: str) -> list[ResponseRecord]:
    """``response_id`` and its ancestors, oldest first, in one query (a recursive CTE).

    ``UNION`` (not ``UNION ALL``) ends the recursion on a cycle; the walk below then reports it.
    """
    links = (
        select(responses.c.id, responses.c.previous_response_id)
        .where(responses.c.id == response_id)
        .cte("response_chain", recursive=True)
    )
    parent = responses.alias("parent")
    links = links.union(
        select(parent.c.id, parent.c.previous_response_id).where(parent.c.id == links.c.previous_response_id)
    )
    with reading(engine) as conn:
        rows = {row.id: row for row in conn.execute(select(responses).where(responses.c.id.in_(select(links.c.id))))}
    ordered: list[Row[Any]] = []
    seen: set[str] = set()
    current: str | None = response_id
    while current is not None:
        if current in seen:
            raise StoreError(f"the stored responses loop: response {current!r} is its own ancestor")
        row = rows.get(current)
        if row is None:
            raise MissingResponse(current)
        seen.add(current)
        ordered.append(row)
        current = row.previous_response_id
    return [_record(row) for row in reversed(ordered)]


def input_items(
    engine: Engine, response_id: str, after: str | None, limit: int, order: str
) -> tuple[list[dict], bool] | None:
    """A page of the input items of ``response_id``; ``None`` if it is not stored."""
    with reading(engine) as conn:
        stored = conn.execute(select(responses.c.input_items).where(responses.c.id == response_id)).scalar()
    if stored is None:
        return None
    return page(loads(stored, f"input items of response {response_id!r}"), after=after, limit=limit, order=order)
