"""Nothing silently ignored: what a request sets, and what the serving backend can honour.

Every field a request sets is one of:

- honoured by the backend (its ``honoured`` table for the operation);
- honoured by the server itself (``fields.SERVER_FIELDS``: streaming, output cutting and trimming);
- metadata (``fields.METADATA_FIELDS``): describes the request without shaping its output;
- a hint (``fields.HINT_FIELDS``: a service tier, a verbosity) the backend does not follow:
  accepted under any policy, and reported in the ``x-localai-dropped-fields`` response header;
- anything else: ``unsupported_parameter`` (400), or dropped and reported in the
  ``x-localai-dropped-fields`` response header when the registration's policy says ``drop``.

A field not in the patched request schema at all is ``unknown_parameter`` (400) under the
default policy. A field set to ``null``, to its documented default or to a value of
``fields.NO_OP_VALUES`` (``reasoning_effort: none``) asks for nothing, so it is never unsupported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localai_runtime.errors import (
    UnknownParameterError,
    UnsupportedParameterError,
)
from localai_runtime.serving.fields import (
    EXTENSIONS,
    HINT_FIELDS,
    REFUSAL_REASONS,
    SERVER_FIELDS,
    honoured,
    is_metadata,
    set_fields,
)
from localai_runtime.serving.merging import effective_request
from localai_runtime.serving.output_filters import NONE, OutputFilters, request_filters
from localai_runtime.serving.registrations import Registration
from localai_runtime.spec.integers import integral
from localai_runtime.spec.request_schemas import RequestSchemas
from localai_runtime.spec.schema_errors import request_error
from localai_runtime.tools.grammar_checks import check_request_grammars, has_grammars
from localai_runtime.tools.grammar_limits import GrammarLimits
from localai_runtime.tools.request import NO_TOOLS, ToolRequest
from localai_runtime.tools.response_format import TEXT, ResponseFormat

DROPPED_HEADER = "x-localai-dropped-fields"
REGISTRATION_HEADER = "x-localai-registration"


@dataclass
class Prepared:
    """A request ready for the backend: the merged fields, what the policy dropped, and what it
    parsed once for the backend (the output filters; the tools and the response format, set by the
    API that has them)."""

    registration: Registration
    request: dict[str, Any]
    dropped: list[str] = field(default_factory=list)
    filters: OutputFilters = NONE
    tools: ToolRequest = NO_TOOLS
    response_format: ResponseFormat = TEXT

    def headers(self) -> dict[str, str]:
        headers = {REGISTRATION_HEADER: _header_value(self.registration.label)}
        if self.dropped:
            headers[DROPPED_HEADER] = _header_value(", ".join(self.dropped))
        return headers


def _header_value(text: str) -> str:
    """``text`` as printable ASCII: a dropped field's name is the client's, and may hold any character
    (outside latin-1 it cannot be sent at all; CR or LF would end the header)."""
    return text.encode("unicode_escape").decode("ascii")


def _remove(body: dict[str, Any], name: str) -> None:
    if name.startswith(f"{EXTENSIONS}."):
        extensions = dict(body.get(EXTENSIONS) or {})
        extensions.pop(name.split(".", 1)[1], None)
        body[EXTENSIONS] = extensions
    else:
        body.pop(name, None)


def _unsupported(name: str, registration: Registration, operation_id: str) -> UnsupportedParameterError:
    param, reason = REFUSAL_REASONS.get(name, (name, ""))
    return UnsupportedParameterError(
        f"'{name}' is not supported by the {registration.settings.backend} backend serving model "
        f"'{registration.model}' for {operation_id}{f': {reason}' if reason else ''}",
        param=param,
    )


def prepare(
    operation_id: str, body: Mapping[str, Any], registration: Registration, schemas: RequestSchemas,
    *, validated: bool = False,
) -> Prepared:
    """``body`` checked against the registration's policy, merged with its defaults and overrides,
    and validated as merged (``validated``: the body was validated against the operation's
    schema on arrival, so it is validated again only if merging or the policy changed it)."""
    request = schemas.get(operation_id)
    assert request is not None, operation_id
    incoming = dict(body)
    dropped: list[str] = []

    for key in list(incoming):
        if key not in request.fields:
            if registration.unknown_policy == "drop":
                incoming.pop(key)
                dropped.append(key)
                continue
            raise UnknownParameterError(f"Unrecognized request argument supplied: {key}", param=key)

    backend = registration.backend
    served = honoured(backend, operation_id, registration.settings) if backend is not None else frozenset()
    for name in set_fields(incoming, request):
        if name in served or name in SERVER_FIELDS or is_metadata(name):
            continue
        if name in HINT_FIELDS or registration.unsupported_policy == "drop":
            _remove(incoming, name)
            dropped.append(name)
            continue
        raise _unsupported(name, registration, operation_id)

    merged = effective_request(registration.defaults, incoming, registration.overrides)
    for name in set_fields({key: merged[key] for key in HINT_FIELDS - served if key in merged}, request):
        merged.pop(name)  # a registration's default hint, not followed either: said so as a request's is
        dropped += [] if name in dropped else [name]
    unchanged = validated and not dropped and not registration.defaults and not registration.overrides
    error = None if unchanged else schemas.first_error(request, merged)  # else: validated as it came
    if error is not None:
        raise request_error(error, " (after applying the registration's defaults and overrides)")
    document = schemas.spec.document
    merged = {key: integral(value, request.fields.get(key), document) for key, value in merged.items()}
    return Prepared(registration, merged, dropped, request_filters(merged))


async def check_grammars(prepared: Prepared) -> None:
    """Every grammar ``prepared`` brings (tool parameters, custom tools' grammars, a JSON answer format, a GBNF grammar)
    measured against the registration's ``grammar_limits`` now, before the request waits for an
    instance: one over a limit is a 400 at once. The measure runs in a worker thread (a GBNF text
    at the 1,000,000-character limit takes most of a second). A relayed request's grammars are
    the engine's to build, and its limits to apply."""
    extensions = prepared.request.get(EXTENSIONS) or {}
    if prepared.registration.remote or not has_grammars(prepared.tools, prepared.response_format, extensions):
        return
    limits = GrammarLimits.from_settings(prepared.registration.settings.get("grammar_limits"))
    await asyncio.to_thread(check_request_grammars, limits, prepared.tools, prepared.response_format, extensions)
