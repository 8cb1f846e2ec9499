"""A Responses request as the chat request that serves it.

:func:`without_no_ops` first removes values that ask for nothing (``include: []``, a plain-text
``text.format``, an empty ``reasoning``), so the policy only weighs what a request really asks.
:func:`chat_request` then maps the fields (``max_output_tokens`` to ``max_tokens``, the tools
parsed by :mod:`.tools`, ``text.format`` to ``response_format``); anything without a chat
counterpart here (built-in tools, hosted tool choices) is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from localai_runtime.errors import UnsupportedParameterError
from localai_runtime.responses.tools import chat_choice, check_kinds, tool_request, tools
from localai_runtime.tools.request import ToolRequest
from localai_runtime.tools.response_format import ResponseFormat, text_format

_COPIED = ("temperature", "top_p", "parallel_tool_calls", "x-localai-extensions")


def without_no_ops(body: Mapping[str, Any]) -> dict[str, Any]:
    request = dict(body)
    if request.get("include") == []:
        request.pop("include")
    text = request.get("text")
    if isinstance(text, Mapping) and (text.get("format") or {}).get("type", "text") == "text" \
            and text.get("verbosity") in (None, "medium"):
        request.pop("text")
    reasoning = request.get("reasoning")
    if isinstance(reasoning, Mapping) and not any(value is not None for value in reasoning.values()):
        request.pop("reasoning")
    if request.get("service_tier") in ("auto", "default"):
        request.pop("service_tier")
    if request.get("top_logprobs") == 0:
        request.pop("top_logprobs")
    return request


def refuse_include(include: Sequence[str] | None) -> None:
    """``include`` asks for extra output (logprobs, search sources...) no local model gives: any
    entry is a 400 naming it."""
    if include:
        raise UnsupportedParameterError(f"include {include[0]!r} is not supported by local models", param="include")


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
    text = request.get("text") or {}
    if text.get("verbosity") not in (None, "medium"):
        raise UnsupportedParameterError("text.verbosity is not supported by local models", param="text.verbosity")
    response_format = text_format(text.get("format"))
    given = tools(request)
    if given:
        chat["tools"] = [tool.as_chat() for tool in given]
    if request.get("tool_choice") is not None:
        chat["tool_choice"] = chat_choice(request["tool_choice"])
    if response_format.constrained:
        chat["response_format"] = response_format.as_chat()
    return chat, tool_request(request, given, messages), response_format
