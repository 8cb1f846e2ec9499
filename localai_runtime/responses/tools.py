"""A Responses request's tools, parsed from its flat shape into a :class:`ToolRequest`.

Every mistake is a 400 naming the Responses field (``tools[0].parameters``, ``tool_choice.name``,
``tools[2].tools[0].format.definition``). :func:`check_kinds` refuses hosted tools and tool
choices (those :mod:`.hosted` did not drop) before anything else is read; :func:`parse_tools`
then builds the tools, and :func:`tool_request` the choice among them.

Two kinds of tool reach the model, both as functions in its own call format:

- ``function`` tools, and the functions of a ``namespace`` tool (a group of functions, as Codex
  CLI sends each MCP server's tools: ``{"type": "namespace", "name": "mcp__github__", "tools":
  [...]}``), flattened to one name (:func:`flat_name`), the namespace's ``description`` heading
  each function's own. A call comes back as a ``function_call``
  item with the function's own ``name`` and its ``namespace``, the two fields Codex routes a call
  by (``codex-rs/core/src/tools/router.rs``: ``ToolName::new(namespace, name)``; the document's
  ``FunctionToolCall.namespace``);
- ``custom`` tools (free text in an optional Lark or regex grammar), called with one argument,
  ``{"input": "<text>"}``, generated under the tool's grammar (:mod:`~localai_runtime.tools.
  custom_grammar`) and answered as a ``custom_tool_call`` item with that ``input``.

:class:`CallTarget` says, for each name the model calls, which item answers it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.tools.custom_grammar import INPUT_PARAMETERS, input_grammar
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

FUNCTION, CUSTOM, NAMESPACE = "function", "custom", "namespace"
_CALLED = (FUNCTION, CUSTOM)


@dataclass(frozen=True)
class CallTarget:
    """What answers a call the model makes under a tool's flat name: a ``function_call`` or
    a ``custom_tool_call`` item (``kind``), with the tool's own ``name`` and ``namespace``."""

    kind: str
    name: str
    namespace: str | None = None

    def fields(self) -> dict[str, str]:
        return {"name": self.name, **({"namespace": self.namespace} if self.namespace else {})}


def flat_name(namespace: str | None, name: str) -> str:
    """The name the model sees for tool ``name`` of ``namespace``: the two joined as Codex shows
    a namespaced tool (its MCP namespaces end in ``__``: ``mcp__github__`` + ``get_me``), with
    ``__`` between them when the namespace does not end in ``_``."""
    if not namespace:
        return name
    return namespace + name if namespace.endswith("_") else f"{namespace}__{name}"


def _entries(request: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], str | None]]:
    """(field, tool, namespace) of each tool the model may call, a namespace's own included."""
    for i, tool in enumerate(request.get("tools") or ()):
        if tool.get("type") != NAMESPACE:
            yield f"tools[{i}]", tool, None
            continue
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequestError("a namespace needs a 'name'", param=f"tools[{i}].name")
        for j, inner in enumerate(tool.get("tools") or ()):
            yield f"tools[{i}].tools[{j}]", inner, tool["name"]


def check_kinds(request: Mapping[str, Any]) -> None:
    """Function, custom and namespace tools only, and a ``tool_choice`` of a kind that can name them."""
    for param, tool, _ in _entries(request):
        if tool.get("type") not in _CALLED:
            raise UnsupportedParameterError(f"tools of type {tool.get('type')!r} are not supported here (hosted "
                                            "tools run on OpenAI's servers); function, custom and namespace tools "
                                            "are", param=f"{param}.type")
    choice = request.get("tool_choice")
    if choice is None or isinstance(choice, str):
        return
    kind = choice.get("type")
    if kind == "allowed_tools":
        for i, tool in enumerate(choice.get("tools") or ()):
            if tool.get("type") not in _CALLED:
                raise UnsupportedParameterError(f"allowed tools of type {tool.get('type')!r} are not supported",
                                                param=f"tool_choice.tools[{i}].type")
    elif kind not in _CALLED:
        raise UnsupportedParameterError(f"tool_choice of type {kind!r} is not supported; function and custom tools "
                                        "are", param="tool_choice.type")


def call_targets(request: Mapping[str, Any]) -> dict[str, CallTarget]:
    """Each flat name the model may call (of a request :func:`parse_tools` accepted), and what answers it."""
    return {flat_name(namespace, tool["name"]): CallTarget(tool["type"], tool["name"], namespace)
            for _, tool, namespace in _entries(request)}


def parse_tools(request: Mapping[str, Any]) -> tuple[Tool, ...]:
    """The request's tools as the model is given them, checked (after :func:`check_kinds`)."""
    parsed, params = [], []
    groups = {tool.get("name"): tool.get("description") for tool in request.get("tools") or ()
              if tool.get("type") == NAMESPACE}
    for param, tool, namespace in _entries(request):
        if not isinstance(tool.get("name"), str):
            raise InvalidRequestError(f"a {tool['type']} tool needs a 'name'", param=f"{param}.name")
        name = flat_name(namespace, tool["name"])
        # a namespace's description (what its tools are for) heads each of its tools' own
        description = "\n\n".join(text for text in (groups.get(namespace), tool.get("description"))
                                   if isinstance(text, str) and text)
        if tool["type"] == CUSTOM:
            parsed.append(_custom(tool, name, description, param))
        else:
            parsed.append(function_tool(name, description, tool.get("parameters") or EMPTY_PARAMETERS,
                                        tool.get("strict"), param))
        params.append(param)
    check_unique(parsed, lambda i: f"{params[i]}.name")
    return tuple(parsed)


def _custom(tool: Mapping[str, Any], name: str, description: str, param: str) -> Tool:
    """A custom tool, called with ``{"input": ...}``: its grammar (if any) enforced and shown."""
    form = tool.get("format")
    grammar = input_grammar(form, f"{param}.format")
    if grammar is None:
        return Tool(name, description, INPUT_PARAMETERS, None, f"{param}.format")
    assert isinstance(form, Mapping)  # a grammar was made of it
    shown = f"{description}\n\nThe input is text in this {form['syntax']} grammar:\n{form['definition']}".strip()
    return Tool(name, shown, INPUT_PARAMETERS, None, f"{param}.format.definition", grammar=grammar)


def tool_request(request: Mapping[str, Any], given: tuple[Tool, ...],
                 messages: Sequence[Mapping[str, Any]]) -> tuple[ToolRequest, Any]:
    """What the model may call among the ``given`` tools, and the ``tool_choice`` as a chat
    request gives it; ``messages``: the turn's chat messages, whose calls and results are
    checked against each other."""
    mode, allowed, chat = _choice(request.get("tool_choice"), tuple(tool.name for tool in given),
                                  call_targets(request))
    parallel = request.get("parallel_tool_calls") is not False
    check_messages(messages)
    return ToolRequest(given if mode != NONE else (), mode, allowed, parallel, offered=bool(given)), chat


def _choice(choice: Any, names: tuple[str, ...], targets: Mapping[str, CallTarget]
            ) -> tuple[str, tuple[str, ...], Any]:
    if choice is None or isinstance(choice, str):
        return (*simple_choice(choice, names, "tool_choice"), choice)
    if not names:
        raise InvalidRequestError("'tool_choice' is only allowed when tools are given", param="tool_choice")
    if choice["type"] in _CALLED:
        name = _resolve(choice, names, targets, "tool_choice")
        return REQUIRED, (name,), {"type": "function", "function": {"name": name}}
    picked = tuple(_resolve(tool, names, targets, f"tool_choice.tools[{i}]")
                   for i, tool in enumerate(choice.get("tools") or ()))
    mode = choice.get("mode", AUTO)
    return mode, picked, {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": [
        {"type": "function", "function": {"name": name}} for name in picked]}}


def _resolve(entry: Mapping[str, Any], names: tuple[str, ...], targets: Mapping[str, CallTarget], param: str) -> str:
    """The flat name a tool choice entry means: its flat name, its ``name`` and ``namespace``,
    or the ``name`` of the one namespaced tool so named; of the entry's ``type``."""
    name, namespace = entry.get("name"), entry.get("namespace")
    flat = flat_name(namespace, name) if isinstance(name, str) else name
    if flat not in targets and namespace is None:
        inner = [key for key, target in targets.items() if target.name == name]
        flat = inner[0] if len(inner) == 1 else flat
    flat = known(flat, names, f"{param}.name")
    if targets[flat].kind != entry.get("type"):
        raise InvalidRequestError(f"{name!r} is a {targets[flat].kind} tool; name it with type "
                                  f"{targets[flat].kind!r}", param=f"{param}.type")
    return flat
