"""A Messages request as the chat request that serves it.

:func:`without_no_ops` removes what asks for nothing (``thinking`` disabled, the top-level
``cache_control``: prompt prefixes are reused whatever it says); :func:`without_hints` removes
what local models do not do (``thinking`` enabled or adaptive and ``output_config.effort``: no
model here reasons, so the answer has no thinking blocks; ``context_management``: nothing is
cleared from the context) and names it for ``x-localai-dropped-fields``. :func:`chat_request`
then maps the rest: ``system`` (a string or text blocks) and ``messages`` (text, ``tool_use``
and ``tool_result`` blocks) to chat messages, ``tools`` (``input_schema``) and ``tool_choice``
(``auto``, ``any``, ``tool``, ``none``) to one :class:`ToolRequest` for the same grammar engine
as chat, ``stop_sequences`` to ``stop``, ``top_k`` to the extension chat has for it. A system
text block holding Claude Code's per-request ``x-anthropic-billing-header:`` is billing data for
Anthropic's API, not an instruction: it is left out of the prompt (and reported), so that the
prompt of every request begins the same and its prefix is reused. Every mistake is a 400 naming
the field (``messages[2].content[0].tool_use_id``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.tools.grammar_limits import GrammarLimits
from localai_runtime.tools.request import (
    AUTO,
    NONE,
    REQUIRED,
    Tool,
    ToolRequest,
    check_messages,
    check_unique,
    function_tool,
    known,
)

BILLING_HEADER = "x-anthropic-billing-header:"
"""How Claude Code's per-request billing block in ``system`` begins."""

_NO_THINKING = ({"type": "disabled"}, None)
_HINTS = ("thinking", "context_management")
_CHOICES = {"auto": AUTO, "any": REQUIRED, "tool": REQUIRED, "none": NONE}
_SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})
"""Re-sent assistant blocks kept out of the prompt: the model did not write them here."""
_MEDIA = {"image": "an image", "document": "a document", "search_result": "a search result",
          "container_upload": "a container upload"}


def without_no_ops(body: Mapping[str, Any]) -> dict[str, Any]:
    request = {key: value for key, value in body.items() if key != "cache_control"}
    if request.get("thinking") in _NO_THINKING:
        request.pop("thinking", None)
    return request


def without_hints(body: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``body`` without the fields local models do not act on, and their names; an
    ``output_config`` that only sets ``effort`` (how hard to think: no model here thinks) too."""
    hinted = [name for name in _HINTS if body.get(name) is not None]
    request = {key: value for key, value in body.items() if key not in hinted}
    config = request.get("output_config")
    if isinstance(config, Mapping) and config.get("effort") is not None:
        rest = {key: value for key, value in config.items() if key != "effort" and value is not None}
        request["output_config"] = rest
        if not rest:
            request.pop("output_config")
        hinted.append("output_config.effort")
    return request, hinted


def _text_of(content: Any, where: str) -> str:
    """The text of a string or of a list of text blocks."""
    if isinstance(content, str):
        return content
    texts = []
    for j, block in enumerate(content or ()):
        if block.get("type") != "text":
            _refuse(block, f"{where}[{j}]")
        texts.append(block["text"])
    return "\n\n".join(texts)


def _refuse(block: Mapping[str, Any], param: str) -> None:
    kind = block.get("type")
    if kind in _MEDIA:
        raise UnsupportedParameterError(f"{param} is {_MEDIA[kind]}, but the models this server serves read text "
                                        "only: describe it in text, or leave it out", param=param)
    raise UnsupportedParameterError(f"content blocks of type {kind!r} are not supported here; text, tool_use and "
                                    "tool_result blocks are", param=param)


def system_messages(system: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The system prompt as chat messages, and the billing blocks left out of it."""
    if system is None or system == "" or system == []:
        return [], []
    if isinstance(system, str):
        return [{"role": "system", "content": system}], []
    kept, dropped = [], []
    for i, block in enumerate(system):
        if block.get("type") == "text" and block["text"].lstrip().startswith(BILLING_HEADER):
            dropped.append(f"system[{i}]")
        else:
            kept.append(block)
    text = _text_of(kept, "system")
    return ([{"role": "system", "content": text}] if text else []), dropped


def _tool_result(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    text = _text_of(block.get("content") or "", f"{where}.content")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results first (as tool messages, answering the calls before them),
    then its text."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    results, texts = [], []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "tool_result":
            results.append(_tool_result(block, f"{where}[{j}]"))
        elif kind == "text":
            texts.append(block["text"])
        else:
            _refuse(block, f"{where}[{j}]")
    return results + ([{"role": "user", "content": "\n\n".join(texts)}] if texts else [])


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts, calls = [], []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append({"id": block["id"], "type": "function", "function": {
                "name": block["name"], "arguments": json.dumps(block.get("input") or {}, ensure_ascii=False)}})
        elif kind not in _SKIPPED_BLOCKS:
            _refuse(block, f"{where}[{j}]")
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(system: Any, messages: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Chat messages for a Messages request's ``system`` and ``messages``; the billing blocks left out."""
    chat, dropped = system_messages(system)
    for i, message in enumerate(messages):
        where = f"messages[{i}].content"
        role = message.get("role")
        if role == "assistant":
            chat.append(_assistant(message["content"], where))
        elif role == "system":
            chat.append({"role": "system", "content": _text_of(message["content"], where)})
        else:
            chat.extend(_user(message["content"], where))
    if messages and messages[-1].get("role") == "assistant":
        # Anthropic continues a final assistant message (a prefill); the chat templates here would
        # close it as a finished turn and start a new one: a different answer, so it is refused.
        raise UnsupportedParameterError(
            "a final assistant message (a prefill for the answer to continue) is not supported here: end with a "
            "user message", param=f"messages[{len(messages) - 1}]")
    return chat, dropped


_BOUNDS = ("maxLength", "maxItems")


def _unbounded(schema: Any, where: str, limit: int, dropped: list[str]) -> Any:
    """``schema`` without the ``maxLength``/``maxItems`` over ``limit`` (each named in ``dropped``)."""
    if isinstance(schema, list):
        return [_unbounded(item, f"{where}[{i}]", limit, dropped) for i, item in enumerate(schema)]
    if not isinstance(schema, Mapping):
        return schema
    kept = {}
    for key, value in schema.items():
        if key in _BOUNDS and isinstance(value, int) and value > limit:
            dropped.append(f"{where}.{key}")
        else:
            kept[key] = _unbounded(value, f"{where}.{key}", limit, dropped)
    return kept


def tools(request: Mapping[str, Any], loosen: GrammarLimits | None = None,
          dropped: list[str] | None = None) -> tuple[Tool, ...]:
    """The request's custom tools; a server tool (``bash_20250124``, ``web_search``...) is a 400.
    With ``loosen`` (the registration's policy drops what it cannot honour), a ``maxLength`` or
    ``maxItems`` over its ``max_repetition`` is left out of the grammar and named in ``dropped``
    (Claude Code's Workflow tool allows a 524,288-character script; no grammar of llama.cpp can
    count that far, and no answer of a local model comes near it); else it is the 400 naming it."""
    parsed = []
    for i, tool in enumerate(request.get("tools") or ()):
        if tool.get("type") not in (None, "custom"):
            raise UnsupportedParameterError(f"tools of type {tool.get('type')!r} run on Anthropic's servers and are "
                                            "not available here; custom tools (with input_schema) are",
                                            param=f"tools[{i}].type")
        schema = tool.get("input_schema")
        if loosen is not None and dropped is not None:
            schema = _unbounded(schema, f"tools[{i}].input_schema", loosen.max_repetition, dropped)
        try:
            parsed.append(dataclasses.replace(
                function_tool(tool["name"], tool.get("description") or "", schema, tool.get("strict"), f"tools[{i}]"),
                param=f"tools[{i}].input_schema"))
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message.replace("'parameters'", "'input_schema'"),
                                      param=f"tools[{i}].input_schema") from exc
    check_unique(parsed, lambda i: f"tools[{i}].name")
    return tuple(parsed)


def tool_request(request: Mapping[str, Any], given: tuple[Tool, ...],
                 messages: Sequence[Mapping[str, Any]]) -> ToolRequest:
    choice = request.get("tool_choice") or {"type": "auto"}
    names = tuple(tool.name for tool in given)
    if not names and choice["type"] != "none" and request.get("tool_choice") is not None:
        raise InvalidRequestError("'tool_choice' is only allowed when tools are given", param="tool_choice")
    mode = _CHOICES[choice["type"]] if names else NONE
    allowed = (known(choice.get("name"), names, "tool_choice.name"),) if choice["type"] == "tool" else names
    check_messages(messages)
    parallel = not choice.get("disable_parallel_tool_use", False)
    return ToolRequest(given if mode != NONE else (), mode, allowed, parallel, offered=bool(given))


def chat_choice(tool_request: ToolRequest) -> Any:
    """The choice as a chat request gives it (for templates and upstream engines)."""
    if tool_request.mode == REQUIRED and len(tool_request.allowed) == 1 and len(tool_request.tools) > 1:
        return {"type": "function", "function": {"name": tool_request.allowed[0]}}
    return tool_request.mode


def chat_request(request: Mapping[str, Any], loosen: GrammarLimits | None = None
                 ) -> tuple[dict[str, Any], ToolRequest, list[str]]:
    """The chat request serving ``request`` (merged and admitted by the policy), its tools, and
    what was left out (system billing blocks; with ``loosen``, tool bounds: see :func:`tools`)."""
    messages, dropped = chat_messages(request.get("system"), request["messages"])
    chat: dict[str, Any] = {"model": request["model"], "messages": messages, "max_tokens": request["max_tokens"]}
    for source, target in (("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")):
        if request.get(source) is not None:
            chat[target] = request[source]
    if request.get("top_k") is not None:
        chat["x-localai-extensions"] = {"top_k": request["top_k"]}
    given = tools(request, loosen, dropped)
    calls = tool_request(request, given, messages)
    if given:
        chat["tools"] = [tool.as_chat() for tool in given]
        chat["tool_choice"] = chat_choice(calls)
        chat["parallel_tool_calls"] = calls.parallel
    return chat, calls, dropped
