"""Fields of a Responses request's tools that the serving backend would not act on.

Two are weighed before the policy weighs the request, as :mod:`.hosted` weighs hosted tools:

- a custom tool's grammar ``format`` (``tools[i].format``) is enforced only by a backend that
  generates under grammars (it honours ``x-localai-extensions.grammar`` and runs here, as
  llama-cpp does): a relayed request (``openai-upstream``) carries the tool to the other engine
  as a function taking ``{"input": string}``, without its grammar;
- ``defer_loading: true`` (a tool loaded only when a tool search asks for it) has no tool search
  here: the tool would be shown to the model as if loaded.

Under the registration's ``unsupported_parameters: drop`` policy each is removed and named in
``x-localai-dropped-fields`` (a custom tool then takes free text); otherwise it is a 400
(``unsupported_parameter``) naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localai_runtime.errors import UnsupportedParameterError

_FORMAT_REASON = ("this backend does not generate under a grammar, so the custom tool's format would not be "
                  "enforced; leave 'format' out (free text) or use a llama-cpp registration")
_DEFER_REASON = "there is no tool search here to load a deferred tool; the tool would be shown as loaded"


def _unserved(tool: Mapping[str, Any], grammars: bool) -> dict[str, str]:
    """The fields of ``tool`` that would not act, and why."""
    found = {}
    form = tool.get("format")
    if tool.get("type") == "custom" and not grammars and isinstance(form, Mapping) \
            and form.get("type", "text") != "text":
        found["format"] = _FORMAT_REASON
    if tool.get("defer_loading") is True:
        found["defer_loading"] = _DEFER_REASON
    return found


def _weighed(tool: Any, param: str, grammars: bool, drop: bool, dropped: list[str]) -> Any:
    if not isinstance(tool, Mapping):
        return tool
    unserved = _unserved(tool, grammars)
    if unserved and not drop:
        name, reason = next(iter(unserved.items()))
        raise UnsupportedParameterError(f"'{param}.{name}' is not supported here: {reason}", param=f"{param}.{name}")
    dropped += [f"{param}.{name}" for name in unserved]
    return {key: value for key, value in tool.items() if key not in unserved} if unserved else tool


def without_unserved_tool_fields(request: Mapping[str, Any], grammars: bool, drop: bool
                                 ) -> tuple[dict[str, Any], list[str]]:
    """``request`` without the tool fields that would not act (``grammars``: the backend enforces
    custom tools' grammars), when ``drop``, and their names (``tools[0].format``,
    ``tools[1].tools[0].defer_loading``); without ``drop`` the first is a 400 naming it."""
    tools = request.get("tools")
    if not isinstance(tools, list):
        return dict(request), []
    dropped: list[str] = []
    kept = []
    for i, tool in enumerate(tools):
        tool = _weighed(tool, f"tools[{i}]", grammars, drop, dropped)
        if isinstance(tool, Mapping) and tool.get("type") == "namespace" and isinstance(tool.get("tools"), list):
            tool = {**tool, "tools": [_weighed(inner, f"tools[{i}].tools[{j}]", grammars, drop, dropped)
                                      for j, inner in enumerate(tool["tools"])]}
        kept.append(tool)
    return {**request, "tools": kept}, dropped
