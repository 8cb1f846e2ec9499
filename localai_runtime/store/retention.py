"""Retention: deleting responses and conversations (with their items) older than a cutoff."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from localai_runtime.store.engine import describe, writing
from localai_runtime.store.schema import conversation_items, conversations, responses

logger = logging.getLogger(__name__)


def purge(engine: Engine, cutoff: float) -> int:
    """Delete what was created before ``cutoff`` (a Unix time); returns the rows deleted, items included."""
    old_conversations = select(conversations.c.id).where(conversations.c.created_at < cutoff)
    statements = {
        "conversation items": delete(conversation_items).where(
            conversation_items.c.conversation_id.in_(old_conversations)
        ),
        "conversations": delete(conversations).where(conversations.c.created_at < cutoff),
        "responses": delete(responses).where(responses.c.created_at < cutoff),
    }
    with writing(engine) as conn:
        counts = {what: conn.execute(statement).rowcount for what, statement in statements.items()}
    if any(counts.values()):
        summary = ", ".join(f"{count} {what}" for what, count in counts.items())
        logger.info("store at %s: purged %s", describe(engine.url), summary)
    return sum(counts.values())
