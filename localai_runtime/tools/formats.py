"""The tool-call formats models are trained on, as data.

A format says how a turn of calls is written: the text before the first call, around each
call, between calls and after the last; the key the arguments go under; the ``trigger`` that
shows a call has begun in free text; and the strings in a chat template that identify it. A
call itself is always ``{"name": "<name>", "<key>": <arguments>}``. A registration may name the
format (``local_settings.tool_call_format``); otherwise it is recognised from the template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CallFormat:
    name: str
    before_all: str
    before_call: str
    after_call: str
    between: str
    after_all: str
    trigger: str
    key: str = "arguments"
    markers: tuple[str, ...] = ()
    parallel: bool = True
    """Whether a turn may hold several calls. A model taught calls by a system message (generic)
    was never trained to stop after its calls, so it makes one call a turn."""

    def call_head(self, name: str) -> str:
        return f'{{"name": {json.dumps(name)}, "{self.key}": '

    def write(self, calls: Sequence[tuple[str, str]]) -> str:
        """``calls`` ((name, arguments JSON), ...) written as the model would write them."""
        written = self.between.join(f"{self.before_call}{self.call_head(name)}{arguments}}}{self.after_call}"
                                    for name, arguments in calls)
        return f"{self.before_all}{written}{self.after_all}"

    @property
    def opening(self) -> str:
        """The fixed text before the first call's JSON (it starts with the trigger)."""
        return self.before_all + self.before_call


FORMATS: Mapping[str, CallFormat] = {f.name: f for f in (
    # Hermes 2/3, Qwen 2.5/3: one <tool_call> block per call.
    CallFormat("hermes", "", "<tool_call>\n", "\n</tool_call>", "\n", "", "<tool_call>", markers=("<tool_call>",)),
    # Mistral (v3 tokenizers and later): one list of calls after [TOOL_CALLS].
    CallFormat("mistral", "[TOOL_CALLS][", "", "", ", ", "]", "[TOOL_CALLS]", markers=("[TOOL_CALLS]",)),
    # Llama 3.1-3.3 JSON tool calls ("parameters", after the python tag).
    CallFormat("llama3", "<|python_tag|>", "", "", "; ", "", "<|python_tag|>", key="parameters",
               markers=("<|python_tag|>", "ipython")),
    # Any other model: Hermes's markup, taught by a system message (see the template probe).
    CallFormat("generic", "", "<tool_call>\n", "\n</tool_call>", "\n", "", "<tool_call>", parallel=False),
)}
GENERIC = FORMATS["generic"]


def recognise(template: str) -> CallFormat:
    """The format a chat template writes calls in, by its markers; the generic one if none."""
    for form in FORMATS.values():
        if form.markers and all(marker in template for marker in form.markers[:1]):
            return form
    return GENERIC


def describe_tools(form: CallFormat, tools: Sequence[Mapping[str, Any]], forced: str | None = None) -> str:
    """A system-prompt block teaching a model without native tool support to call tools."""
    listing = "\n".join(json.dumps({"name": t["name"], "description": t.get("description", ""),
                                    "parameters": t.get("parameters", {})}, ensure_ascii=False) for t in tools)
    example = form.write([(tools[0]["name"], "{...}")]) if tools else ""
    rule = f"You must call the tool {forced}." if forced else "Call a tool only when it helps to answer."
    return (f"You can call these tools (JSON Schema of their arguments):\n{listing}\n"
            f"To call a tool, answer with exactly:\n{example}\nwith its arguments as a JSON object. {rule}")
