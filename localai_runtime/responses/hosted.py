"""Hosted tools of a Responses request: tools OpenAI runs itself (``web_search``, ``file_search``,
``image_generation``, ``code_interpreter``, ``computer_use_preview``, ``tool_search``, an ``mcp``
server, ``local_shell``, ``shell``, ``apply_patch``...), which have no counterpart here.

Where a registration's ``policy.hosted_tools`` (else its ``unsupported_parameters``) says
``drop``, :func:`without_hosted_tools` removes them, and the tool choices naming them, before
the policy weighs the request, naming each in ``x-localai-dropped-fields``; otherwise
:func:`~.tools.check_kinds` refuses them with a 400 naming ``tools[i].type``. Codex CLI, for one,
always sends ``{"type": "web_search", "external_web_access": false}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localai_runtime.tools.request import REQUIRED

OWN_TOOLS = frozenset({"function", "custom", "namespace"})
"""Tool types whose calls the model writes here; every other type is a hosted (built-in) tool."""
_OWN_CHOICES = frozenset({"function", "custom", "allowed_tools"})
"""``tool_choice`` types naming tools the model calls here; any other names a hosted tool."""


def _hosted(entry: Any, own: frozenset[str]) -> str | None:
    """The type of a hosted tool (or tool choice) ``entry``, else None."""
    kind = entry.get("type") if isinstance(entry, Mapping) else None
    return kind if isinstance(kind, str) and kind not in own else None


def _own(entries: list[Any], param: str, dropped: list[str]) -> list[Any]:
    """``entries`` less their hosted tools, each named in ``dropped`` (``tools[1] (web_search)``)."""
    kept = []
    for i, entry in enumerate(entries):
        kind = _hosted(entry, OWN_TOOLS)
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
