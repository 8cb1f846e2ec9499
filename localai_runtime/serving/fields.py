"""What a request sets, by name, and which fields the server honours whatever the backend.

Shared by the registration loader (checking defaults at start-up) and the policy (admitting
requests), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from localai_runtime.spec.request_schemas import MISSING, RequestSchema, RequestSchemas
from localai_runtime.spec.schemas import follow_refs

EXTENSIONS = "x-localai-extensions"

METADATA_FIELDS = frozenset({
    "user", "metadata", "store", "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
    "client_metadata",
})
"""Fields that describe a request rather than shape its output: accepted, not passed on."""

NO_OP_VALUES: Mapping[str, frozenset[Any]] = {
    "reasoning_effort": frozenset({"none", "minimal"}),  # the model does not reason (medium asks it to)
    "service_tier": frozenset({"auto", "default"}),  # every request is served the one way there is here
    "verbosity": frozenset({"medium"}),
}
"""Values that ask for nothing of the backend, like the field left out (the document gives these
fields' defaults inside an ``anyOf``, where :meth:`RequestSchema.default_of` does not look)."""

NO_OP_INCLUDES = frozenset({"reasoning.encrypted_content"})
"""Responses' ``include`` entries that ask for nothing: no model here reasons, so there is no
reasoning to encrypt."""

NESTED_NO_OPS: Mapping[str, Callable[[Any], bool]] = {
    "reasoning": lambda value: isinstance(value, Mapping) and value.get("effort") in (
        None, *NO_OP_VALUES["reasoning_effort"]),
    "include": lambda value: isinstance(value, list) and set(value) <= NO_OP_INCLUDES,
}
"""Responses' objects and lists that ask for nothing (``reasoning: {effort: none}``, whatever its
summary; ``include: [reasoning.encrypted_content]``), weighed like :data:`NO_OP_VALUES`."""

HINT_FIELDS = frozenset({"service_tier", "verbosity"})
"""Fields that ask for a way of serving (a processing tier, a concise or verbose style) that a
backend not honouring them does not follow: accepted whatever the policy, and reported in
``x-localai-dropped-fields`` as not applied."""

REFUSAL_REASONS: Mapping[str, tuple[str, str]] = {
    "reasoning": ("reasoning.effort", "the model does not reason; effort 'none' or 'minimal', or no effort, "
                  "asks for no reasoning"),
    "reasoning_effort": ("reasoning_effort", "the model does not reason; 'none' or 'minimal', or leaving it out, "
                         "asks for no reasoning"),
}
"""Why a field is refused, and the param named, where the plain refusal would not say it."""

OUTPUT_FILTERS = ("cutstrings", "trimstrings")
"""Extension keys the server applies to generated text itself (see ``output_filters``)."""

SERVER_FIELDS = frozenset({
    "model", "stream", "stream_options", "encoding_format", *(f"{EXTENSIONS}.{key}" for key in OUTPUT_FILTERS),
})
"""Fields the server itself honours, whatever the backend."""


CHAT = "createChatCompletion"
RESPONSES = "createResponse"

RESPONSES_AS_CHAT = {
    "input": "messages", "instructions": "messages", "max_output_tokens": "max_tokens",
    "temperature": "temperature", "top_p": "top_p", "tools": "tools", "tool_choice": "tool_choice",
    "parallel_tool_calls": "parallel_tool_calls", "text": "response_format",
}
"""createResponse is served as a chat completion: each of its fields, and the chat field the
backend must honour for it (see ``localai_runtime.responses``)."""

RESPONSES_SERVER_FIELDS = frozenset({
    "previous_response_id", "conversation", "background", "truncation",
    "max_tool_calls",  # limits calls of built-in tools, and every built-in tool is refused
})
"""createResponse fields the server honours itself (the store, the chain, truncation)."""

MESSAGES_AS_CHAT = {
    "messages": "messages", "system": "messages", "max_tokens": "max_tokens", "temperature": "temperature",
    "top_p": "top_p", "top_k": f"{EXTENSIONS}.top_k", "stop_sequences": "stop", "tools": "tools",
    "tool_choice": "tool_choice",
}
"""Anthropic's Messages API is served as a chat completion too (``localai_runtime.messages``)."""

AS_CHAT: Mapping[str, tuple[Mapping[str, str], frozenset[str]]] = {
    RESPONSES: (RESPONSES_AS_CHAT, RESPONSES_SERVER_FIELDS),
    "messages_post": (MESSAGES_AS_CHAT, frozenset()),
    "beta_messages_post": (MESSAGES_AS_CHAT, frozenset()),
}
"""Operations served as chat completions: each field, the chat field the backend must honour for
it, and the fields the server honours itself."""


def honoured(backend: Any, operation_id: str, settings: Any = None) -> frozenset[str]:
    """The fields ``backend`` honours for ``operation_id``: its own table (a backend whose
    abilities vary per registration gives one for its ``settings``), or for an operation the
    server translates (createResponse) the fields whose translation it honours."""
    table: Mapping[str, frozenset[str]] = backend.honoured if settings is None else backend.honoured_for(settings)
    if operation_id in table:
        return table[operation_id]
    if operation_id in AS_CHAT and CHAT in table:
        chat = table[CHAT]
        as_chat, server = AS_CHAT[operation_id]
        fields = {name for name, target in as_chat.items() if target in chat}
        fields |= {name for name in chat if name.startswith(f"{EXTENSIONS}.")}
        return frozenset(fields | server)
    return frozenset()


def serves(backend: Any, operation_id: str) -> bool:
    return operation_id in backend.honoured or (operation_id in AS_CHAT and CHAT in backend.honoured)


def backend_operations(operations: frozenset[str]) -> frozenset[str]:
    """The operations a backend serves for ``operations`` (createResponse and Messages run as chat)."""
    return frozenset(CHAT if op in AS_CHAT else op for op in operations)


def is_metadata(name: str) -> bool:
    return name in METADATA_FIELDS


def set_fields(values: Mapping[str, Any], request: RequestSchema | None = None) -> list[str]:
    """Names a request sets: top-level fields and ``x-localai-extensions.<key>``.

    With ``request``, a field that is null, equal to its documented default or (for a field of
    ``NO_OP_VALUES``) one of its no-op values instead is left out.
    """
    names: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        if key == EXTENSIONS and isinstance(value, Mapping):
            names.extend(f"{key}.{sub}" for sub, inner in value.items() if inner is not None)
        elif request is None or not _asks_nothing(request, key, value):
            names.append(key)
    return names


def _asks_nothing(request: RequestSchema, key: str, value: Any) -> bool:
    if key in NO_OP_VALUES:
        return value in NO_OP_VALUES[key]
    if key in NESTED_NO_OPS and NESTED_NO_OPS[key](value):
        return True
    default = request.default_of(key)
    return default is not MISSING and default == value


def relay_problems(backend: Any, settings: Any, operations: frozenset[str], schemas: RequestSchemas,
                   requests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Start-up problems of a registration on a backend that relays requests elsewhere: fields it
    lists as honoured that no operation of the registration has, and output filters (which it
    cannot apply) among its request defaults or overrides (``requests``: section -> values)."""
    if backend is None or not backend.remote or settings is None:
        return []
    problems = []
    for section, values in requests.items():
        for key in OUTPUT_FILTERS:
            if (values.get(EXTENSIONS) or {}).get(key) is not None:
                problems.append(f"{section}.{EXTENSIONS}.{key}: a relayed answer passes through unchanged, "
                                "so output filters cannot apply")
    listed = backend.listed_fields(settings)
    known: set[str] = set()
    for operation in operations | backend_operations(operations):
        if (request := schemas.get(operation)) is not None:
            known |= set(request.fields)
            extension = follow_refs(schemas.spec.document, request.fields.get(EXTENSIONS) or {})
            known |= {f"{EXTENSIONS}.{key}" for key in (extension.get("properties") or {})}
    for index, name in enumerate(listed or ()):
        if name not in known:
            problems.append(f"local_settings.honoured[{index}]: {name!r} is not a request field of "
                            f"{', '.join(sorted(operations))}")
    return problems
