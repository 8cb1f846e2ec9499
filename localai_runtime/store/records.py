"""What the store hands out and what it raises."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass
class ResponseRecord:
    """One stored response: the full OpenAI response object and the input items of its request."""

    id: str
    created_at: float
    model: str
    status: str
    response: dict
    input_items: list[dict]
    previous_response_id: str | None = None
    conversation_id: str | None = None


class StoreError(Exception):
    """The store cannot be opened, read or written; the message says what and where."""


class MissingResponse(LookupError):
    """A response (asked for, or an ancestor through ``previous_response_id``) is not stored."""

    def __init__(self, response_id: str) -> None:
        super().__init__(f"no stored response with id {response_id!r}")
        self.response_id = response_id
