"""A Responses request as the chat request that serves it.

:func:`without_no_ops` first removes values that ask for nothing (``include: []``, a plain-text
``text.format``, an empty ``reasoning``), so the policy only weighs what a request really asks.
:func:`chat_request` then maps the fields (``max_output_tokens`` to ``max_tokens``, flat
function tools to chat tools, ``text.format`` to ``response_format``); anything without a chat
counterpart here (built-in tools, hosted tool choices) is a 400 naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.tools.request import ToolRequest, tool_request

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


def _tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise UnsupportedParameterError(f"tools of type {tool.get('type')!r} are not supported; function tools "
                                            "are", param=f"tools[{i}].type")
        function = {"name": tool["name"], "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice is None or isinstance(choice, str):
        return choice
    kind = choice.get("type")
    if kind == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if kind == "allowed_tools":
        tools = []
        for i, tool in enumerate(choice.get("tools") or ()):
            if tool.get("type") != "function":
                raise UnsupportedParameterError(f"allowed tools of type {tool.get('type')!r} are not supported",
                                                param=f"tool_choice.tools[{i}].type")
            tools.append({"type": "function", "function": {"name": tool.get("name")}})
        return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode", "auto"), "tools": tools}}
    raise UnsupportedParameterError(f"tool_choice of type {kind!r} is not supported; function tools are",
                                    param="tool_choice.type")


def _response_format(text: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not text:
        return None
    if text.get("verbosity") not in (None, "medium"):
        raise UnsupportedParameterError("text.verbosity is not supported by local models", param="text.verbosity")
    form = text.get("format") or {"type": "text"}
    if form["type"] == "json_schema":
        schema = {key: form[key] for key in ("name", "schema", "strict", "description") if form.get(key) is not None}
        return {"type": "json_schema", "json_schema": schema}
    return {"type": form["type"]}


_CHAT_PARAM = [(re.compile(r"^tools\[(\d+)\]\.function\."), r"tools[\1]."),
               (re.compile(r"^tool_choice\.function\."), "tool_choice."),
               (re.compile(r"^tool_choice\.allowed_tools\.tools\[(\d+)\]\.function\."), r"tool_choice.tools[\1].")]


def _responses_param(param: str | None) -> str | None:
    for pattern, replacement in _CHAT_PARAM:
        if param is not None and pattern.search(param):
            return pattern.sub(replacement, param)
    return param


def chat_request(request: Mapping[str, Any], messages: list[dict[str, Any]]) -> tuple[dict[str, Any], ToolRequest]:
    """The chat request serving ``request`` (merged and admitted by the policy) on ``messages``,
    and its tools."""
    chat: dict[str, Any] = {"model": request["model"], "messages": messages}
    chat.update({key: request[key] for key in _COPIED if request.get(key) is not None})
    if request.get("max_output_tokens") is not None:
        chat["max_tokens"] = request["max_output_tokens"]
    if request.get("tools"):
        chat["tools"] = _tools(request["tools"])
    if request.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(request["tool_choice"])
    response_format = _response_format(request.get("text"))
    if response_format is not None and response_format["type"] != "text":
        chat["response_format"] = response_format
    try:
        tools = tool_request(chat)  # a mistake in the tools is a 400 before any wait
    except InvalidRequestError as exc:
        exc.param = _responses_param(exc.param)
        raise
    return chat, tools
