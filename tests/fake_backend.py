"""A backend for tests of registrations, merging and policy: it echoes what reached it.

Registered through the real :class:`BackendRegistry`; only the model is fake. Its chat and
completion output is the JSON of the request fields it received (minus the prompt), split into
pieces of a few characters, so a test can read back exactly what the adapter was given.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from localai_runtime.backends import BackendRegistry, LocalSettings, Piece

GENERATION_FIELDS = frozenset({"model", "max_tokens", "temperature", "n", "seed", "stop"})


class EchoInstance:
    overlaps = 0
    """Times a generation started on an instance another generation was still using."""
    last_run: tuple[int, int] = (0, 0)
    """(pieces produced, pieces planned) of the last generation that ended."""

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.closed = False
        self._users = 0
        self._lock = threading.Lock()

    def _echo(self, request: Mapping[str, Any], prompt_key: str, should_stop) -> Iterator[Piece]:
        with self._lock:
            self._users += 1
            if self._users > 1:
                EchoInstance.overlaps += 1
        try:
            yield from self._pieces(request, prompt_key, should_stop)
        finally:
            with self._lock:
                self._users -= 1

    def _pieces(self, request: Mapping[str, Any], prompt_key: str, should_stop) -> Iterator[Piece]:
        shown = {k: v for k, v in request.items() if k != prompt_key}
        text = json.dumps(shown, sort_keys=True)
        pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
        choices = int(request.get("n") or 1)
        delay = self.settings.get("delay_s", 0)
        produced = 0
        try:
            for index in range(choices):
                for count, part in enumerate(pieces, 1):
                    if count == 3 and request.get(prompt_key) == "fail after two pieces":
                        raise RuntimeError("the backend failed mid-generation")
                    if should_stop():
                        return
                    if delay:
                        time.sleep(delay)
                    last = count == len(pieces)
                    produced += 1
                    yield Piece(text=part, index=index, finish_reason="stop" if last else None,
                                prompt_tokens=3 if last else 0, completion_tokens=len(pieces) if last else 0)
        finally:
            EchoInstance.last_run = (produced, len(pieces) * choices)

    def chat(self, request, should_stop):
        return self._echo(request, "messages", should_stop)

    def complete(self, request, should_stop):
        return self._echo(request, "prompt", should_stop)

    def embed(self, inputs):
        return [[float(len(str(item))), 1.0, 0.5, -0.5] for item in inputs], len(inputs)

    def tokenize(self, text):
        return list(text.encode())

    def close(self):
        self.closed = True


class EchoBackend:
    name = "echo"
    settings_schema = {"type": "object", "properties": {"delay_s": {"type": "number", "minimum": 0}}}
    honoured = {
        "createChatCompletion": GENERATION_FIELDS | {"messages", "x-localai-extensions.top_k", "x-localai-extensions.min_p"},
        "createCompletion": GENERATION_FIELDS | {"prompt", "x-localai-extensions.top_k"},
        "createEmbedding": frozenset({"model", "input", "encoding_format"}),
    }

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        if settings.model_file is not None and not settings.model_file.exists():
            return [f"model file not found: {settings.model_file}"]
        return []

    loads = 0

    def load(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> EchoInstance:
        EchoBackend.loads += 1
        time.sleep(settings.get("delay_s", 0) * 4)  # loading takes a while, as for real models
        if settings.get("template") == "fail-to-load":
            raise RuntimeError(f"cannot load {settings.model_file}")
        return EchoInstance(settings)


def registry() -> BackendRegistry:
    backends = BackendRegistry()
    backends.register("echo", EchoBackend)
    return backends
