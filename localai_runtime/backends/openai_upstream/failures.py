"""The errors this backend answers with: the upstream's own, in OpenAI's shape with its status
kept and the replica named, and this server's words about an upstream that failed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from localai_runtime.errors import APIError

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 429: "rate_limit_error"}
_CONTEXT_WORDS = ("maximum context length", "exceed_context_size", "context length", "context window")


class UpstreamError(APIError):
    """An error answered by (or about) the upstream, with its own status."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.status = status
        self.type = type or _TYPES.get(status, "api_error")


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(504, message, type="timeout_error", code="upstream_timeout")


class UpstreamStreamError(APIError):
    """The upstream's stream reported an error of its own after it began."""


def bad_answer(url: str, what: str) -> UpstreamError:
    return UpstreamError(502, f"The upstream {url} {what}", code="bad_upstream_answer")


def upstream_error(url: str, status: int, content: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """The upstream's error answer in OpenAI's shape: its message, type, param and code kept.

    The upstream refusing this server's own key (401, 403) is this server's misconfiguration,
    not the client's: a 502 saying so, so that clients do not blame their key."""
    message = content.decode("utf-8", "replace").strip()[:2000]
    details: Mapping[str, Any] = {}
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        error = parsed.get("error", parsed)
        if isinstance(error, Mapping):
            details = error
            message = str(error.get("message") or error.get("detail") or message)
        elif isinstance(error, str):
            message = error
    if status in (401, 403):
        return UpstreamError(502, f"The upstream {url} refused this server's credentials ({status}: {message}); "
                                  "check the registration's api_key_env", code="upstream_auth_failed")
    param, code = details.get("param"), details.get("code")
    kept = {"Retry-After": headers["retry-after"]} if status in (429, 503) and "retry-after" in headers else None
    return UpstreamError(status, f"The upstream {url} answered {status}: {message}",
                         type=details.get("type") if isinstance(details.get("type"), str) else None,
                         param=param if isinstance(param, str) else None,
                         code=str(code) if isinstance(code, str) else "upstream_error", headers=kept)


def is_context_overflow(error: UpstreamError) -> bool:
    """Whether the upstream refused the prompt as too long for its context (llama-cpp-python's
    server, llama.cpp's llama-server and vLLM each say so differently)."""
    if error.status != 400:
        return False
    if error.code == "context_length_exceeded" or error.type == "exceed_context_size_error":
        return True
    return any(words in error.message.lower() for words in _CONTEXT_WORDS)


def parse_event(data: str, url: str) -> dict[str, Any]:
    """One stream event's JSON object."""
    try:
        chunk = json.loads(data)
    except ValueError:
        chunk = None
    if not isinstance(chunk, dict):
        raise bad_answer(url, "sent a stream event that is not a JSON object")
    return chunk


def error_in(chunk: Mapping[str, Any], url: str) -> UpstreamStreamError | None:
    """An error event of the upstream's stream, as an error naming the upstream."""
    error = chunk.get("error")
    if error is None:
        return None
    if isinstance(error, Mapping):
        message, code = error.get("message") or "no message", error.get("code")
    else:
        message, code = str(error), None
    return UpstreamStreamError(f"The upstream {url} failed during the stream: {message}",
                               code=str(code) if isinstance(code, str) else "upstream_error")
