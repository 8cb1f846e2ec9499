"""What a request sets, by name, and which fields the server honours whatever the backend.

Shared by the registration loader (checking defaults at start-up) and the policy (admitting
requests), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localai_runtime.spec.request_schemas import MISSING, RequestSchema

EXTENSIONS = "x-localai-extensions"

METADATA_FIELDS = frozenset({
    "user", "metadata", "store", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
})
"""Fields that describe a request rather than shape its output: accepted, not passed on."""

SERVER_FIELDS = frozenset({
    "model", "stream", "stream_options", "encoding_format", f"{EXTENSIONS}.cutstrings", f"{EXTENSIONS}.trimstrings",
})
"""Fields the server itself honours, whatever the backend."""


def is_metadata(name: str) -> bool:
    return name in METADATA_FIELDS


def set_fields(values: Mapping[str, Any], request: RequestSchema | None = None) -> list[str]:
    """Names a request sets: top-level fields and ``x-localai-extensions.<key>``.

    With ``request``, a field that is null or equal to its documented default is left out.
    """
    names = []
    for key, value in values.items():
        if value is None:
            continue
        if key == EXTENSIONS and isinstance(value, Mapping):
            names.extend(f"{key}.{sub}" for sub, inner in value.items() if inner is not None)
        elif request is None or request.default_of(key) is MISSING or request.default_of(key) != value:
            names.append(key)
    return names
