"""The JSON objects of the Responses API: the response, its usage, and list pages."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

TERMINAL = frozenset({"completed", "incomplete", "failed", "cancelled"})


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + completion_tokens}


def response_object(response_id: str, created_at: float, model: str, request: Mapping[str, Any], *,
                    stored: bool, conversation_id: str | None) -> dict[str, Any]:
    """A response in progress, echoing what the request asked for (as OpenAI does)."""
    text = request.get("text") or {}
    body: dict[str, Any] = {
        "id": response_id, "object": "response", "created_at": int(created_at), "status": "in_progress",
        "background": bool(request.get("background")), "error": None, "incomplete_details": None,
        "instructions": request.get("instructions"), "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"), "model": model, "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None}, "store": stored,
        "temperature": request.get("temperature", 1.0), "top_p": request.get("top_p", 1.0),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": request.get("tool_choice") or "auto", "tools": list(request.get("tools") or ()),
        "truncation": request.get("truncation") or "disabled",
        "metadata": dict(request.get("metadata") or {}),
    }
    for key in ("user", "safety_identifier", "prompt_cache_key"):
        if request.get(key) is not None:
            body[key] = request[key]
    if conversation_id is not None:
        body["conversation"] = {"id": conversation_id}
    return body


def finished(body: dict[str, Any], status: str, *, output: Sequence[Mapping[str, Any]] | None = None,
             prompt_tokens: int = 0, completion_tokens: int = 0, cached_tokens: int = 0,
             error: Mapping[str, Any] | None = None, incomplete_reason: str | None = None) -> dict[str, Any]:
    """``body`` in a final ``status``."""
    done = dict(body)
    done["status"] = status
    if output is not None:
        done["output"] = [dict(item) for item in output]
        done["usage"] = usage(prompt_tokens, completion_tokens, cached_tokens)
    done["error"] = dict(error) if error else None
    done["incomplete_details"] = {"reason": incomplete_reason} if incomplete_reason else None
    if status in ("completed", "incomplete"):
        done["completed_at"] = int(time.time())
    return done


def page(items: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else "", "last_id": items[-1]["id"] if items else ""}
