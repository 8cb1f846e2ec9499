"""A chat request's tools, normalised and checked before anything is generated.

The request fields (``tools``, ``tool_choice``, ``parallel_tool_calls`` and the legacy
``functions``/``function_call``) become one :class:`ToolRequest`; messages with tool calls and
tool results are checked against each other. Every mistake is a 400 naming the field: a tool
whose ``parameters`` is not a JSON Schema, a ``tool_choice`` naming a tool not in ``tools``, an
assistant message whose arguments are not JSON, a ``tool`` message answering no earlier call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError

NONE, AUTO, REQUIRED = "none", "auto", "required"


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: Mapping[str, Any]
    strict: bool | None = None
    param: str = field(default="", compare=False)
    """The request field of :attr:`parameters` (``tools[0].function.parameters``, Responses'
    ``tools[0].parameters``), for errors found later."""
    grammar: str | None = field(default=None, compare=False)
    """GBNF of the arguments, used instead of :attr:`parameters`' (a custom tool's grammar)."""

    def as_chat(self) -> dict[str, Any]:
        """The tool as a chat request lists it (for chat templates and upstream engines)."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        if self.strict is not None:
            function["strict"] = self.strict
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolRequest:
    """What the model may call: ``mode`` is none, auto or required; ``allowed`` the names a
    call may use (one name for a named choice); ``legacy`` answers with ``function_call``;
    ``offered``: the request listed tools (``tools`` is empty when it may call none of them)."""

    tools: tuple[Tool, ...]
    mode: str
    allowed: tuple[str, ...]
    parallel: bool
    legacy: bool = False
    offered: bool = False

    @property
    def calls(self) -> bool:
        return self.mode != NONE and bool(self.allowed)

    def tool(self, name: str) -> Tool:
        return next(tool for tool in self.tools if tool.name == name)


EMPTY_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


def _tool(function: Any, param: str) -> Tool:
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidRequestError("a function needs a 'name'", param=param)
    parameters = function.get("parameters")
    if parameters is None:
        parameters = EMPTY_PARAMETERS
    return function_tool(function["name"], function.get("description") or "", parameters, function.get("strict"),
                         param)


def function_tool(name: str, description: str, parameters: Any, strict: bool | None, param: str) -> Tool:
    """A function tool whose ``parameters`` is checked as a JSON Schema of an object (a mistake
    names ``{param}.parameters``)."""
    try:
        validator_for(parameters).check_schema(parameters)
    except jsonschema.SchemaError as error:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        raise InvalidRequestError(f"'parameters' is not a valid JSON Schema: {error.message} (at {where or 'the top'})",
                                  param=f"{param}.parameters") from error
    if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
        raise InvalidRequestError("'parameters' must describe a JSON object", param=f"{param}.parameters")
    return Tool(name, description, parameters, strict, f"{param}.parameters")


def check_unique(tools: Sequence[Tool], param: Callable[[int], str]) -> None:
    """No two tools share a name (``param(i)`` names the second one's name field)."""
    names = [tool.name for tool in tools]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InvalidRequestError(f"two tools are named {name!r}", param=param(i))


def _tools(request: Mapping[str, Any]) -> tuple[tuple[Tool, ...], bool]:
    if request.get("functions") is not None:
        if request.get("tools") is not None:
            raise InvalidRequestError("give either 'tools' or the deprecated 'functions', not both", param="functions")
        return tuple(_tool(f, f"functions[{i}]") for i, f in enumerate(request["functions"])), True
    tools = []
    for i, item in enumerate(request.get("tools") or ()):
        if item.get("type") != "function":
            raise UnsupportedParameterError(f"tools of type {item.get('type')!r} are not supported; "
                                            "function tools are", param=f"tools[{i}].type")
        tools.append(_tool(item.get("function"), f"tools[{i}].function"))
    check_unique(tools, lambda i: f"tools[{i}].function.name")
    return tuple(tools), False


def _choice(request: Mapping[str, Any], tools: tuple[Tool, ...], legacy: bool) -> tuple[str, tuple[str, ...]]:
    """(mode, allowed names)."""
    key = "function_call" if legacy else "tool_choice"
    choice = request.get(key)
    names = tuple(tool.name for tool in tools)
    if choice is None or isinstance(choice, str):
        return simple_choice(choice, names, key, legacy)
    if not tools:
        raise InvalidRequestError(f"'{key}' is only allowed when tools are given", param=key)
    if legacy:
        return REQUIRED, (known(choice.get("name"), names, f"{key}.name"),)
    if choice.get("type") == "function":
        return REQUIRED, (known((choice.get("function") or {}).get("name"), names, f"{key}.function.name"),)
    if choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        picked = []
        for i, tool in enumerate(allowed.get("tools") or ()):
            name = (tool.get("function") or {}).get("name") if tool.get("type") == "function" else None
            picked.append(known(name, names, f"{key}.allowed_tools.tools[{i}].function.name"))
        return allowed.get("mode", AUTO), tuple(picked)
    raise UnsupportedParameterError(f"tool_choice of type {choice.get('type')!r} is not supported", param=key)


def simple_choice(choice: str | None, names: tuple[str, ...], key: str,
                  legacy: bool = False) -> tuple[str, tuple[str, ...]]:
    """(mode, allowed names) of no choice or a choice given as a string (``key`` names the field)."""
    if choice is None:
        return (AUTO if names else NONE), names
    if not names:
        raise InvalidRequestError(f"'{key}' is only allowed when tools are given", param=key)
    if choice not in (NONE, AUTO, REQUIRED) or (legacy and choice == REQUIRED):
        raise InvalidRequestError(f"unknown {key} {choice!r}", param=key)
    return choice, names


def known(name: Any, names: Sequence[str], param: str) -> str:
    if name not in names:
        raise InvalidRequestError(f"{name!r} is not one of the tools given ({', '.join(names)})", param=param)
    return name


def tool_request(request: Mapping[str, Any]) -> ToolRequest:
    """The request's tools and choice; raises a 400 naming the field for any mistake."""
    tools, legacy = _tools(request)
    mode, allowed = _choice(request, tools, legacy)
    parallel = False if legacy else request.get("parallel_tool_calls") is not False
    check_messages(request.get("messages") or ())
    return ToolRequest(tools if mode != NONE else (), mode, allowed, parallel, legacy, offered=bool(tools))


NO_TOOLS = ToolRequest((), NONE, (), True)
"""The tools of a request that can call none (a completion, a chat request without tools)."""


def check_messages(messages: Sequence[Mapping[str, Any]]) -> None:
    """Assistant tool calls carry JSON arguments; each tool result answers an earlier call."""
    called: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            for j, call in enumerate(message.get("tool_calls") or ()):
                arguments = (call.get("function") or {}).get("arguments")
                _json_object(arguments, f"messages[{i}].tool_calls[{j}].function.arguments")
                called.add(call.get("id"))
            if message.get("function_call"):
                _json_object(message["function_call"].get("arguments"), f"messages[{i}].function_call.arguments")
        elif role == "tool" and message.get("tool_call_id") not in called:
            raise InvalidRequestError(f"tool_call_id {message.get('tool_call_id')!r} answers no tool call of an "
                                      "earlier assistant message", param=f"messages[{i}].tool_call_id")


def _json_object(arguments: Any, param: str) -> None:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError as exc:
        raise InvalidRequestError(f"the arguments are not JSON: {exc}", param=param) from exc
    if not isinstance(value, dict):
        raise InvalidRequestError("the arguments must be a JSON object, written as a string", param=param)


def modern_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages of the legacy function API in today's shape: an assistant ``function_call``
    becomes a ``tool_calls`` entry, a ``function`` message the ``tool`` message answering it."""
    result: list[dict[str, Any]] = []
    pending: dict[Any, str] = {}  # a legacy call's name (as the client wrote it) -> its id
    for i, message in enumerate(messages):
        message = dict(message)
        if message.get("role") == "assistant" and message.get("function_call"):
            call = message.pop("function_call")
            call_id = f"call_legacy_{i}"
            pending[call.get("name")] = call_id
            message["tool_calls"] = [{"id": call_id, "type": "function",
                                      "function": {"name": call.get("name"), "arguments": call.get("arguments")}}]
        elif message.get("role") == "function":
            name = message.get("name")
            message = {"role": "tool", "tool_call_id": pending.pop(name, f"call_legacy_{i}"), "name": name,
                       "content": message.get("content") or ""}
        result.append(message)
    return result
