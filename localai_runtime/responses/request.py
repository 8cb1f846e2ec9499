"""A Responses request as the chat request that serves it.

:func:`without_no_ops` first removes values that ask for nothing of a model that does not reason
(``include: []`` or ``["reasoning.encrypted_content"]``, a plain-text ``text.format``, a
``reasoning`` with effort ``none``, ``minimal`` or none at all, whatever its ``summary``), so the
policy only weighs what a request really asks; :func:`without_hints` removes ``text.verbosity``,
a hint local models do not follow, and names it for ``x-localai-dropped-fields``.
:func:`chat_request` then maps the fields (``max_output_tokens`` to ``max_tokens``, the tools
parsed by :mod:`.tools`, ``text.format`` to ``response_format``); anything without a chat
counterpart here (built-in tools, hosted tool choices) is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from localai_runtime.errors import UnsupportedParameterError
from localai_runtime.responses.tools import check_kinds, parse_tools, tool_request
from localai_runtime.serving.fields import NESTED_NO_OPS, NO_OP_INCLUDES, NO_OP_VALUES
from localai_runtime.tools.request import ToolRequest
from localai_runtime.tools.response_format import ResponseFormat, text_format

_COPIED = ("temperature", "top_p", "parallel_tool_calls", "x-localai-extensions")


# What asks for nothing is serving.fields' table (NO_OP_VALUES, NESTED_NO_OPS), which registration
# defaults are weighed by too, here removed from Responses' nested fields.
_DEFAULT_VERBOSITY = (None, *NO_OP_VALUES["verbosity"])


def without_no_ops(body: Mapping[str, Any]) -> dict[str, Any]:
    request = dict(body)
    include = request.get("include")
    if isinstance(include, list):
        request["include"] = [entry for entry in include if entry not in NO_OP_INCLUDES]
        if not request["include"]:
            request.pop("include")
    text = request.get("text")
    if isinstance(text, Mapping) and (text.get("format") or {}).get("type", "text") == "text" \
            and text.get("verbosity") in _DEFAULT_VERBOSITY:
        request.pop("text")
    reasoning = request.get("reasoning")
    if reasoning is None or NESTED_NO_OPS["reasoning"](reasoning):
        request.pop("reasoning", None)
    if request.get("service_tier") in NO_OP_VALUES["service_tier"]:
        request.pop("service_tier")
    if request.get("top_logprobs") == 0:
        request.pop("top_logprobs")
    return request


def without_hints(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``body`` without ``text.verbosity`` when it asks for other than the default (local models
    are not trained to follow it), and the names of what was so removed."""
    text = body.get("text")
    if not isinstance(text, Mapping) or text.get("verbosity") in _DEFAULT_VERBOSITY:
        return dict(body), []
    return without_no_ops({**body, "text": {key: value for key, value in text.items() if key != "verbosity"}}), \
        ["text.verbosity"]


def refuse_include(include: Sequence[str] | None) -> None:
    """``include`` asks for extra output (logprobs, search sources...) no local model gives: any
    entry but ``reasoning.encrypted_content`` (there are no reasoning items) is a 400 naming it."""
    for entry in include or ():
        if entry not in NO_OP_INCLUDES:
            raise UnsupportedParameterError(f"include {entry!r} is not supported by local models", param="include")


def chat_request(request: Mapping[str, Any], messages: list[dict[str, Any]]
                 ) -> tuple[dict[str, Any], ToolRequest, ResponseFormat]:
    """The chat request serving ``request`` (merged and admitted by the policy) on ``messages``
    (as an upstream engine is sent it), its tools and its format; a mistake in the tools is a 400
    before any wait."""
    chat: dict[str, Any] = {"model": request["model"], "messages": messages}
    chat.update({key: request[key] for key in _COPIED if request.get(key) is not None})
    if request.get("max_output_tokens") is not None:
        chat["max_tokens"] = request["max_output_tokens"]
    check_kinds(request)
    response_format = text_format((request.get("text") or {}).get("format"))
    given = parse_tools(request)
    if given:
        chat["tools"] = [tool.as_chat() for tool in given]
    tools, choice = tool_request(request, given, messages)
    if request.get("tool_choice") is not None:
        chat["tool_choice"] = choice
    if response_format.constrained:
        chat["response_format"] = response_format.as_chat()
    return chat, tools, response_format
