"""Conversations and their items, kept in order by ``position`` (worker thread).

Appending locks the conversation's row (``SELECT ... FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE``
already serialises writers), so two appends never take the same positions.
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.engine import Connection, Engine, Row

from localai_runtime.store.engine import reading, writing
from localai_runtime.store.jsontext import dumps, loads
from localai_runtime.store.schema import conversation_items, conversations

logger = logging.getLogger(__name__)

_items = conversation_items.c
_DIRECTIONS: dict[str, tuple[Callable[[Any, Any], ColumnElement[bool]], ColumnElement[Any]]] = {
    "asc": (operator.gt, _items.position.asc()),
    "desc": (operator.lt, _items.position.desc()),
}


def _conversation(row: Row[Any]) -> dict:
    meta = None if row.metadata is None else loads(row.metadata, f"metadata of conversation {row.id!r}")
    return {"id": row.id, "created_at": row.created_at, "metadata": meta}


def _item(stored: str, conversation_id: str) -> dict:
    return loads(stored, f"item of conversation {conversation_id!r}")


def _exists(conn: Connection, conversation_id: str, *, lock: bool = False) -> bool:
    query = select(conversations.c.id).where(conversations.c.id == conversation_id)
    return conn.execute(query.with_for_update() if lock else query).first() is not None


def _append(conn: Connection, conversation_id: str, items: list[dict], start: int) -> None:
    if not items:
        return
    if any("id" not in item for item in items):
        raise ValueError("every conversation item needs an 'id'")
    now = time.time()
    rows = [
        {"conversation_id": conversation_id, "position": start + n, "id": item["id"], "item": dumps(item),
         "created_at": now}
        for n, item in enumerate(items)
    ]
    conn.execute(insert(conversation_items), rows)


def create_conversation(
    engine: Engine, conversation_id: str, created_at: float, metadata: dict | None, items: list[dict]
) -> None:
    with writing(engine) as conn:
        conn.execute(
            insert(conversations).values(
                id=conversation_id,
                created_at=created_at,
                updated_at=time.time(),
                metadata=None if metadata is None else dumps(metadata),
            )
        )
        _append(conn, conversation_id, items, 0)


def get_conversation(engine: Engine, conversation_id: str) -> dict | None:
    with reading(engine) as conn:
        row = conn.execute(select(conversations).where(conversations.c.id == conversation_id)).first()
    return None if row is None else _conversation(row)


def update_conversation(engine: Engine, conversation_id: str, metadata: dict | None) -> dict | None:
    values = {"metadata": None if metadata is None else dumps(metadata), "updated_at": time.time()}
    with writing(engine) as conn:
        found = conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(**values))
        if not found.rowcount:
            return None
        row = conn.execute(select(conversations).where(conversations.c.id == conversation_id)).one()
    return _conversation(row)


def delete_conversation(engine: Engine, conversation_id: str) -> bool:
    with writing(engine) as conn:
        conn.execute(delete(conversation_items).where(_items.conversation_id == conversation_id))
        return conn.execute(delete(conversations).where(conversations.c.id == conversation_id)).rowcount > 0


def add_items(engine: Engine, conversation_id: str, items: list[dict]) -> bool:
    """Append ``items`` in order; ``False`` if there is no such conversation."""
    with writing(engine) as conn:
        return append_items(conn, conversation_id, items)


def append_items(conn: Connection, conversation_id: str, items: list[dict]) -> bool:
    """:func:`add_items` in the write transaction of ``conn``."""
    if not _exists(conn, conversation_id, lock=True):
        return False
    last = conn.execute(select(func.max(_items.position)).where(_items.conversation_id == conversation_id)).scalar()
    _append(conn, conversation_id, items, 0 if last is None else last + 1)
    conn.execute(update(conversations).where(conversations.c.id == conversation_id).values(updated_at=time.time()))
    return True


def list_items(
    engine: Engine, conversation_id: str, after: str | None, limit: int, order: str
) -> tuple[list[dict], bool] | None:
    """A page of the conversation's items by position; ``None`` if there is no such conversation."""
    compare, ordering = _DIRECTIONS[order]
    query = select(_items.item).where(_items.conversation_id == conversation_id).order_by(ordering).limit(limit + 1)
    with reading(engine) as conn:
        if not _exists(conn, conversation_id):
            return None
        if after is not None:
            mark = select(_items.position).where(_items.conversation_id == conversation_id, _items.id == after)
            position = conn.execute(mark).scalar()
            if position is None:
                return [], False
            query = query.where(compare(_items.position, position))
        stored = conn.execute(query).scalars().all()
    return [_item(text, conversation_id) for text in stored[:limit]], len(stored) > limit


def all_items(engine: Engine, conversation_id: str) -> list[dict] | None:
    query = select(_items.item).where(_items.conversation_id == conversation_id).order_by(_items.position)
    with reading(engine) as conn:
        if not _exists(conn, conversation_id):
            return None
        stored = conn.execute(query).scalars().all()
    return [_item(text, conversation_id) for text in stored]


def get_item(engine: Engine, conversation_id: str, item_id: str) -> dict | None:
    query = select(_items.item).where(_items.conversation_id == conversation_id, _items.id == item_id)
    with reading(engine) as conn:
        stored = conn.execute(query).scalar()
    return None if stored is None else _item(stored, conversation_id)


def delete_item(engine: Engine, conversation_id: str, item_id: str) -> bool:
    query = delete(conversation_items).where(_items.conversation_id == conversation_id, _items.id == item_id)
    with writing(engine) as conn:
        return conn.execute(query).rowcount > 0
