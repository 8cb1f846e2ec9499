"""Merging a request over a registration's defaults, and its overrides over the result.

Objects (such as ``x-localai-extensions``) merge key by key, recursively; arrays and scalars
replace. ``None`` in the request is a value like any other (the client asked for null).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` over ``base``; neither argument is modified."""
    merged: dict[str, Any] = dict(base)
    for key, value in update.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge(current, value)
        else:
            merged[key] = value
    return merged


def effective_request(
    defaults: Mapping[str, Any], request: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """defaults < request < overrides."""
    return merge(merge(defaults, request), overrides)
