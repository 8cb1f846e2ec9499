"""Rendering chat prompts with the model's own template, tools included.

The template (the registration's ``template``, else the GGUF's ``tokenizer.chat_template``,
preferring its ``tool_use`` variant when tools are given, else ChatML) is probed once at load
with small needle conversations: does it render ``tools``, assistant ``tool_calls`` (with
arguments as a string, or only as an object), ``tool`` messages? What it lacks is polyfilled,
never dropped: tools described in a system message in the model's call format, earlier calls
written as assistant text in that format, tool results as user text.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.formats import CallFormat, describe_tools
from localai_runtime.tools.request import ToolRequest

_NEEDLE_TOOL = {"type": "function", "function": {
    "name": "localai_probe_tool", "description": "probe", "parameters": {
        "type": "object", "properties": {"probe_arg": {"type": "string"}}}}}
_NEEDLE_CALL = {"id": "call_localaiprobe", "type": "function",
                "function": {"name": "localai_probe_call", "arguments": '{"probe_arg": "probe_value"}'}}
_USER = {"role": "user", "content": "probe question"}


@dataclass(frozen=True)
class Abilities:
    tools: bool
    calls: bool
    arguments_as_object: bool
    results: bool
    probe_ms: float


class ChatTemplate:
    def __init__(self, source: str, tool_source: str | None, form: CallFormat, eos: str, bos: str) -> None:
        self.form = form
        self._plain = Jinja2ChatFormatter(source, eos_token=eos, bos_token=bos)
        self._tools = Jinja2ChatFormatter(tool_source, eos_token=eos, bos_token=bos) if tool_source else self._plain
        self.abilities = self._probe()

    def _try(self, messages: list[dict[str, Any]], **kwargs: Any) -> str | None:
        try:
            return self._tools(messages=messages, **kwargs).prompt  # type: ignore[arg-type]  # plain dicts
        except Exception:  # noqa: BLE001 - a template that cannot render this lacks the ability
            return None

    def _probe(self) -> Abilities:
        started = time.perf_counter()
        tools = "localai_probe_tool" in (self._try([_USER], tools=[_NEEDLE_TOOL]) or "")
        answered = {"role": "tool", "tool_call_id": "call_localaiprobe", "name": "localai_probe_call",
                    "content": "probe_result"}
        as_string = self._try([_USER, {"role": "assistant", "content": "", "tool_calls": [_NEEDLE_CALL]}, answered])
        as_object = self._try([_USER, {"role": "assistant", "content": "", "tool_calls": [_object_arguments(
            _NEEDLE_CALL)]}, answered])
        string_ok = as_string is not None and "localai_probe_call" in as_string and '\\"probe_arg' not in as_string
        object_ok = as_object is not None and "localai_probe_call" in as_object and "probe_value" in as_object
        # A template without a native call format renders a tool message as some other turn, if at
        # all; the model was never trained on tool results, so they are written as user text.
        results = self.form.markers != () and any(text is not None and "probe_result" in text
                                                  for text in (as_string, as_object))
        return Abilities(tools, string_ok or object_ok, object_ok and not string_ok, results,
                         (time.perf_counter() - started) * 1000)

    def render(self, messages: Sequence[Mapping[str, Any]], tools: ToolRequest | None,
               generation_prompt: bool = True) -> str:
        """The prompt; ``generation_prompt`` False leaves out the assistant turn's opening."""
        active = tools if tools is not None and tools.calls else None
        messages = self._polyfilled(messages, active)
        formatter = self._tools if active is not None else self._plain
        if not generation_prompt:  # a shallow copy shares the compiled template
            formatter = copy.copy(formatter)
            formatter.add_generation_prompt = False
        kwargs: dict[str, Any] = {}
        if active is not None and self.abilities.tools:
            # Not Tool.as_chat(): templates are shown a description always (empty or not) and no
            # ``strict``, as they have been rendered so far; a change would change every prompt.
            kwargs["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                  "parameters": dict(t.parameters)}}
                               for t in active.tools if t.name in active.allowed]
        try:
            return formatter(messages=messages, **kwargs).prompt  # type: ignore[arg-type]  # plain dicts
        except (ValueError, TypeError, jinja2.TemplateError) as exc:
            raise InvalidRequestError(f"the chat template cannot render these messages: {exc}",
                                      param="messages") from exc

    def _polyfilled(self, messages: Sequence[Mapping[str, Any]], tools: ToolRequest | None) -> list[dict[str, Any]]:
        abilities, form = self.abilities, self.form
        names = {}
        result = []
        for message in messages:
            message = dict(message)
            calls = message.get("tool_calls") or []
            for call in calls:
                names[call.get("id")] = call["function"]["name"]
            if calls and not abilities.calls:
                written = form.write([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
                message["content"] = f"{message.get('content') or ''}{written}"
                message.pop("tool_calls")
            elif calls and abilities.arguments_as_object:
                message["tool_calls"] = [_object_arguments(c) for c in calls]
            if message.get("role") == "tool" and not abilities.results:
                name = message.get("name") or names.get(message.get("tool_call_id"), "the tool")
                message = {"role": "user", "content": f"The tool {name} answered: {message.get('content') or ''}\n"
                                                      "Use this to answer."}
            result.append(message)
        if tools is not None and not abilities.tools:
            listed = [{"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                      for t in tools.tools if t.name in tools.allowed]
            forced = tools.allowed[0] if tools.mode == "required" and len(tools.allowed) == 1 else None
            block = describe_tools(form, listed, forced)
            if result and result[0].get("role") == "system":
                result[0] = {**result[0], "content": f"{result[0].get('content') or ''}\n\n{block}"}
            else:
                result.insert(0, {"role": "system", "content": block})
        return result


def _object_arguments(call: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(call["function"])
    if isinstance(function.get("arguments"), str):
        function["arguments"] = json.loads(function["arguments"])
    return {**call, "function": function}
