"""JSON values stored as text columns (portable across SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import logging
from typing import Any

from localai_runtime.store.records import StoreError

logger = logging.getLogger(__name__)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads(text: str, what: str) -> Any:
    """The value stored in ``text``; :class:`StoreError` naming ``what`` if it is not JSON."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"the stored {what} is not valid JSON: {exc}") from exc
