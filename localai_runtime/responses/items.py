"""Input items: checked, given ids, stored as the API lists them, and turned into chat messages.

Items are stored in one canonical shape (``message`` with content parts, ``function_call``
(with its ``namespace``, where it has one), ``function_call_output``, ``custom_tool_call``,
``custom_tool_call_output``, ``reasoning``), so a chain re-renders the same prompt on every turn.
A custom tool's call is rendered to the model as the call it writes here: a tool call of its
flat name with the arguments ``{"input": <the input>}``; a namespace's function under its flat
name (:func:`~.tools.flat_name`). Every mistake is a 400 naming the item, e.g.
``input[2].content[0].type``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.responses.tools import flat_name

_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "summary_text", "reasoning_text"})
_MEDIA_PARTS = {"input_image": "image", "input_file": "file", "input_audio": "audio"}
"""Content parts refused because they are not text, and what each one gives."""
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _text_parts(content: Any, role: str, where: str, field: str = "content") -> list[dict[str, Any]]:
    kind = "output_text" if role == "assistant" else "input_text"
    parts: list[dict[str, Any]]
    if isinstance(content, str):
        parts = [{"type": kind, "text": content}]
    elif isinstance(content, Sequence):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") not in _TEXT_PARTS | {"refusal"}:
                _refuse_part(part, f"{where}.{field}[{j}]")
            text = part.get("refusal") if part.get("type") == "refusal" else part.get("text")
            if not isinstance(text, str):
                raise InvalidRequestError("a text content part needs its 'text'", param=f"{where}.{field}[{j}].text")
            parts.append({"type": kind, "text": text})
    else:
        raise InvalidRequestError(f"'{field}' must be a string or a list of content parts", param=f"{where}.{field}")
    if kind == "output_text":
        parts = [{**part, "annotations": [], "logprobs": []} for part in parts]
    return parts


def _refuse_part(part: Any, param: str) -> NoReturn:
    kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
    if kind in _MEDIA_PARTS:
        raise UnsupportedParameterError(f"{param} is an {kind}, but the models this server serves read text only "
                                        f"(no {_MEDIA_PARTS[kind]} reaches them): describe it in text, or leave it "
                                        "out", param=param)
    raise UnsupportedParameterError(f"content parts of type {kind!r} are not supported; text parts are", param=param)


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidRequestError(f"unknown role {role!r}", param=f"{where}.role")
    return {"type": "message", "id": item.get("id") or new_id("msg"), "status": "completed", "role": role,
            "content": _text_parts(item.get("content"), role, where)}


def _function_call(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    arguments = item.get("arguments")
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except ValueError as exc:
        raise InvalidRequestError(f"the arguments are not JSON: {exc}", param=f"{where}.arguments") from exc
    if not isinstance(parsed, dict):
        raise InvalidRequestError("the arguments must be a JSON object, written as a string",
                                  param=f"{where}.arguments")
    return {"type": "function_call", "id": item.get("id") or new_id("fc"), "call_id": item["call_id"],
            **_named(item), "arguments": arguments, "status": "completed"}


def _named(item: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": item["name"], **({"namespace": item["namespace"]} if item.get("namespace") else {})}


def _custom_call(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(item.get("input"), str):
        raise InvalidRequestError("a custom tool call needs its 'input' text", param=f"{where}.input")
    return {"type": "custom_tool_call", "id": item.get("id") or new_id("ctc"), "call_id": item["call_id"],
            **_named(item), "input": item["input"], "status": "completed"}


def _output(kind: str, prefix: str) -> Callable[[Mapping[str, Any], str], dict[str, Any]]:
    def build(item: Mapping[str, Any], where: str) -> dict[str, Any]:
        output = item.get("output")
        if not isinstance(output, str):
            output = "".join(part["text"] for part in _text_parts(output, "tool", where, "output"))
        return {"type": kind, "id": item.get("id") or new_id(prefix), "call_id": item["call_id"],
                "output": output, "status": "completed"}
    return build


def _reasoning(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A reasoning item as the API lists it: an id, a list summary (a null one is []), and its
    content and encrypted content where given. It is kept, not rendered."""
    kept = {key: value for key, value in item.items() if value is not None}
    return {**kept, "id": item.get("id") or new_id("rs"), "summary": list(item.get("summary") or ())}


_KINDS = {"message": _message, "function_call": _function_call, "reasoning": _reasoning,
          "function_call_output": _output("function_call_output", "fco"), "custom_tool_call": _custom_call,
          "custom_tool_call_output": _output("custom_tool_call_output", "ctco")}
CALLS = frozenset({"function_call", "custom_tool_call"})
OUTPUTS = frozenset({"function_call_output", "custom_tool_call_output"})


def input_items(value: Any, param: str = "input") -> list[dict[str, Any]]:
    """The request's ``input`` as canonical items, each with an id."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_message({"role": "user", "content": value}, param)]
    items = []
    for i, item in enumerate(value):
        where = f"{param}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidRequestError("an input item must be an object", param=where)
        kind = item.get("type", "message")
        build = _KINDS.get(kind)
        if build is None:
            raise UnsupportedParameterError(f"input items of type {kind!r} are not supported; messages, function "
                                            "and custom tool calls, their outputs and reasoning items are",
                                            param=f"{where}.type")
        items.append(build(item, where))
    return items


def check_calls(history: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], param: str = "input") -> None:
    """Each call's output answers a call made earlier (in the history or the input)."""
    called = {item["call_id"] for item in history if item.get("type") in CALLS}
    for i, item in enumerate(new):
        if item["type"] in CALLS:
            called.add(item["call_id"])
        elif item["type"] in OUTPUTS and item["call_id"] not in called:
            kind = item["type"].removesuffix("_output")
            raise InvalidRequestError(f"call_id {item['call_id']!r} answers no earlier {kind} item",
                                      param=f"{param}[{i}].call_id")


def check_new_ids(existing: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]], param: str) -> None:
    """Items added to a conversation have ids not already in it (nor twice among themselves)."""
    seen = {item.get("id") for item in existing}
    for i, item in enumerate(new):
        if item["id"] in seen:
            raise InvalidRequestError(f"Duplicate item found with id {item['id']!r}", param=f"{param}[{i}].id")
        seen.add(item["id"])


def _text(item: Mapping[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item.get("content") or ())


def to_messages(instructions: str | None, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages for ``items``: consecutive calls join the assistant message before them, as
    chat templates expect; reasoning items are not rendered (the model did not write them here)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        kind = item["type"]
        if kind == "message":
            messages.append({"role": _ROLES[item["role"]], "content": _text(item)})
        elif kind in CALLS:
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": None}
                messages.append(last)
            arguments = item["arguments"] if kind == "function_call" else json.dumps({"input": item["input"]},
                                                                                      ensure_ascii=False)
            last.setdefault("tool_calls", []).append({"id": item["call_id"], "type": "function", "function": {
                "name": flat_name(item.get("namespace"), item["name"]), "arguments": arguments}})
        elif kind in OUTPUTS:
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return messages
