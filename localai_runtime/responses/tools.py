"""A Responses request's tools, parsed from its flat shape into a :class:`ToolRequest`.

Every mistake is a 400 naming the Responses field (``tools[0].parameters``, ``tool_choice.name``,
``tool_choice.tools[1].type``). :func:`without_hosted_tools` removes, where the registration's
policy drops them, the hosted tools (``web_search``, ``mcp``, ``code_interpreter``...: tools that
OpenAI runs itself, which have no local counterpart) and the tool choices that name them;
:func:`check_kinds` refuses those left before anything else is read; :func:`tool_request` then
builds the tools and the choice. The chat request serving the turn lists them in chat's shape
(:meth:`Tool.as_chat`, :func:`chat_choice`), for chat templates and upstream engines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.tools.request import (
    AUTO,
    EMPTY_PARAMETERS,
    NONE,
    REQUIRED,
    Tool,
    ToolRequest,
    check_messages,
    check_unique,
    function_tool,
    known,
    simple_choice,
)

_OWN_TOOLS = frozenset({"function"})
"""Tool types whose calls the model writes here; every other type is a hosted (built-in) tool."""


_OWN_CHOICES = frozenset({"function", "allowed_tools"})
"""``tool_choice`` types naming tools the model calls here; any other names a hosted tool."""


def _hosted(entry: Any, own: frozenset[str]) -> str | None:
    """The type of a hosted tool (or tool choice) ``entry``, else None."""
    kind = entry.get("type") if isinstance(entry, Mapping) else None
    return kind if isinstance(kind, str) and kind not in own else None


def _own(entries: list[Any], param: str, dropped: list[str]) -> list[Any]:
    """``entries`` less their hosted tools, each named in ``dropped`` (``tools[1] (web_search)``)."""
    kept = []
    for i, entry in enumerate(entries):
        kind = _hosted(entry, _OWN_TOOLS)
        if kind is None:
            kept.append(entry)
        else:
            dropped.append(f"{param}[{i}] ({kind})")
    return kept


def without_hosted_tools(request: Mapping[str, Any], drop: bool) -> tuple[dict[str, Any], list[str]]:
    """``request`` without its hosted tools and the tool choices naming them when ``drop`` (the
    registration's ``policy.hosted_tools``), and what was removed, for ``x-localai-dropped-fields``:
    ``tools[1] (web_search)``, ``tool_choice (file_search)``, ``tool_choice.tools[0] (mcp)``. When
    no tool is left, ``tools`` goes, and a ``tool_choice`` of ``required`` with it (reported)."""
    result = dict(request)
    if not drop:
        return result, []
    dropped: list[str] = []
    if isinstance(request.get("tools"), list):
        result["tools"] = _own(request["tools"], "tools", dropped)
    choice = request.get("tool_choice")
    if (kind := _hosted(choice, _OWN_CHOICES)) is not None:
        result.pop("tool_choice")
        dropped.append(f"tool_choice ({kind})")
    elif isinstance(choice, Mapping) and choice.get("type") == "allowed_tools" \
            and isinstance(choice.get("tools"), list):
        result["tool_choice"] = {**choice, "tools": _own(choice["tools"], "tool_choice.tools", dropped)}
        if not result["tool_choice"]["tools"]:
            result.pop("tool_choice")
            dropped.append("tool_choice")
    if dropped and not result.get("tools"):
        result.pop("tools", None)
        if result.get("tool_choice") == REQUIRED:
            dropped.append("tool_choice")
        if isinstance(result.get("tool_choice"), str):  # auto and none ask for nothing without tools
            result.pop("tool_choice")
    return result, dropped


def check_kinds(request: Mapping[str, Any]) -> None:
    """Function tools only, and a ``tool_choice`` of a kind that can name them."""
    for i, tool in enumerate(request.get("tools") or ()):
        if tool.get("type") != "function":
            raise UnsupportedParameterError(f"tools of type {tool.get('type')!r} are not supported; function tools "
                                            "are", param=f"tools[{i}].type")
    choice = request.get("tool_choice")
    if choice is None or isinstance(choice, str):
        return
    kind = choice.get("type")
    if kind == "allowed_tools":
        for i, tool in enumerate(choice.get("tools") or ()):
            if tool.get("type") != "function":
                raise UnsupportedParameterError(f"allowed tools of type {tool.get('type')!r} are not supported",
                                                param=f"tool_choice.tools[{i}].type")
    elif kind != "function":
        raise UnsupportedParameterError(f"tool_choice of type {kind!r} is not supported; function tools are",
                                        param="tool_choice.type")


def tools(request: Mapping[str, Any]) -> tuple[Tool, ...]:
    """The request's function tools, checked (after :func:`check_kinds`)."""
    parsed = []
    for i, tool in enumerate(request.get("tools") or ()):
        if not isinstance(tool.get("name"), str):
            raise InvalidRequestError("a function needs a 'name'", param=f"tools[{i}].name")
        parsed.append(function_tool(tool["name"], tool.get("description") or "",
                                    tool.get("parameters") or EMPTY_PARAMETERS, tool.get("strict"), f"tools[{i}]"))
    check_unique(parsed, lambda i: f"tools[{i}].name")
    return tuple(parsed)


def tool_request(request: Mapping[str, Any], given: tuple[Tool, ...],
                 messages: Sequence[Mapping[str, Any]]) -> ToolRequest:
    """What the model may call among the ``given`` tools; ``messages``: the turn's chat messages,
    whose calls and results are checked against each other."""
    mode, allowed = _choice(request.get("tool_choice"), tuple(tool.name for tool in given))
    parallel = request.get("parallel_tool_calls") is not False
    check_messages(messages)
    return ToolRequest(given if mode != NONE else (), mode, allowed, parallel, offered=bool(given))


def _choice(choice: Any, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    if choice is None or isinstance(choice, str):
        return simple_choice(choice, names, "tool_choice")
    if not names:
        raise InvalidRequestError("'tool_choice' is only allowed when tools are given", param="tool_choice")
    if choice["type"] == "function":
        return REQUIRED, (known(choice.get("name"), names, "tool_choice.name"),)
    picked = tuple(known(tool.get("name"), names, f"tool_choice.tools[{i}].name")
                   for i, tool in enumerate(choice.get("tools") or ()))
    return choice.get("mode", AUTO), picked


def chat_choice(choice: Any) -> Any:
    """A Responses ``tool_choice`` (checked) as a chat request gives it."""
    if choice is None or isinstance(choice, str):
        return choice
    if choice["type"] == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    return {"type": "allowed_tools", "allowed_tools": {"mode": choice.get("mode", AUTO), "tools": [
        {"type": "function", "function": {"name": tool.get("name")}} for tool in choice.get("tools") or ()]}}
