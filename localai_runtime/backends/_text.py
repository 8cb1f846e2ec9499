"""Text plumbing shared by the adapters: token bytes to text, chat messages to plain ones."""

from __future__ import annotations

import codecs
from collections.abc import Mapping, Sequence
from typing import Any

from localai_runtime.errors import UnsupportedParameterError

DEFAULT_CONTEXT_SIZE = 2048


_ROLE_ALIASES = {"developer": "system"}


_TEXT_PARTS = {"text": "text", "refusal": "refusal"}


def request_value(request: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``request[key]``, with JSON null meaning "not given"."""
    value = request.get(key)
    return default if value is None else value


class TextStream:
    """Token bytes in, text out: holds back incomplete UTF-8 characters and any tail that may
    begin a stop sequence; invalid bytes become U+FFFD, a character cut at the end is dropped."""

    def __init__(self, stop: Sequence[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stop = [s for s in stop if s]
        self._held = ""
        self.stopped = False
        self.stopped_by: str | None = None

    def feed(self, data: bytes) -> str:
        held = self._held + self._decoder.decode(data)
        cuts = [(i, s) for s in self._stop if (i := held.find(s)) >= 0]
        if cuts:
            at, self.stopped_by = min(cuts)
            self.stopped, self._held = True, ""
            return held[:at]
        keep = max((k for s in self._stop for k in range(min(len(s) - 1, len(held)), 0, -1)
                    if held.endswith(s[:k])), default=0)
        self._held = held[len(held) - keep:]
        return held[:len(held) - keep]

    def finish(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held


def plain_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages with string contents (text parts joined) and roles chat templates know."""
    plain = []
    for i, message in enumerate(messages):
        message = dict(message)
        role = message.get("role")
        message["role"] = _ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                key = _TEXT_PARTS.get(part.get("type"))
                if key is None:
                    raise UnsupportedParameterError(
                        f"content parts of type {part.get('type')!r} are not supported by this model",
                        param=f"messages[{i}].content")
                texts.append(part.get(key) or "")
            content = "".join(texts)
        message["content"] = content or ""
        plain.append(message)
    return plain
