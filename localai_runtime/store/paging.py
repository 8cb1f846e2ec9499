"""Pages of items: ``order`` (``asc``: stored order, ``desc``: reversed), ``after`` (an item id,
exclusive) and ``limit``, answering ``(items, has_more)``. An ``after`` that names no item gives an
empty page."""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

ORDERS: dict[str, Callable[[list[dict]], list[dict]]] = {
    "asc": lambda items: items,
    "desc": lambda items: items[::-1],
}


def check_page(limit: int, order: str) -> None:
    """``ValueError`` for an order other than ``asc``/``desc`` or a negative limit."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {sorted(ORDERS)}, not {order!r}")
    if limit < 0:
        raise ValueError(f"limit must not be negative, not {limit}")


def page(items: list[dict], *, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
    """One page of ``items`` (already in stored order)."""
    ordered = ORDERS[order](items)
    start = 0
    if after is not None:
        index = next((i for i, item in enumerate(ordered) if item.get("id") == after), None)
        if index is None:
            return [], False
        start = index + 1
    return ordered[start : start + limit], start + limit < len(ordered)
