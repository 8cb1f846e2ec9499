"""A backend for tests of registrations, merging and policy: it echoes what reached it.

Registered through the real :class:`BackendRegistry`; only the model is fake. Its chat and
completion output is the JSON of the request fields it received (minus the prompt), split into
pieces of a few characters, so a test can read back exactly what the adapter was given.

Its instances count overlaps (two generations or embeddings on one instance at once, streamed
or not); a generation of the prompt :data:`GATED` waits while :func:`gate_closed` holds, so a
test decides when it ends. :class:`OverlapCounter` counts overlaps on the real backends too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from localai_runtime.backends import BackendRegistry, LocalSettings, Piece

GENERATION_FIELDS = frozenset({"model", "max_tokens", "temperature", "n", "seed", "stop"})

GATED = "wait at the gate"
"""A prompt (or last message) whose generation waits before its first piece while
:func:`gate_closed` holds, deaf to ``should_stop`` as a long prompt evaluation is."""
_gate = threading.Event()
_gate.set()


@contextlib.contextmanager
def gate_closed() -> Iterator[None]:
    """Generations of the prompt :data:`GATED` wait until the block ends."""
    _gate.clear()
    try:
        yield
    finally:
        _gate.set()


def _gated(request: Mapping[str, Any], prompt_key: str) -> bool:
    prompt = request.get(prompt_key)
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], Mapping):  # chat messages
        prompt = prompt[-1].get("content")
    return prompt == GATED


class EchoInstance:
    batching = False
    kv_usage = 0.0
    overlaps = 0
    """Times a generation started on an instance another generation was still using."""
    last_run: tuple[int, int] = (0, 0)
    """(pieces produced, pieces planned) of the last generation that ended."""

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.closed = False
        self._users = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _used(self) -> Iterator[None]:
        with self._lock:
            self._users += 1
            if self._users > 1:
                EchoInstance.overlaps += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1

    def _echo(self, request: Mapping[str, Any], prompt_key: str, should_stop) -> Iterator[Piece]:
        # Counted from the first piece asked for to the generator's end or close, streamed or not.
        with self._used():
            yield from self._pieces(request, prompt_key, should_stop)

    def _pieces(self, request: Mapping[str, Any], prompt_key: str, should_stop) -> Iterator[Piece]:
        if _gated(request, prompt_key):
            _gate.wait(60)
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

    def chat(self, request, should_stop, tools, response_format):
        return self._echo(request, "messages", should_stop)

    def complete(self, request, should_stop):
        return self._echo(request, "prompt", should_stop)

    def embed(self, inputs):
        with self._used():
            return [[float(len(str(item))), 1.0, 0.5, -0.5] for item in inputs], len(inputs)

    def tokenize(self, text):
        return list(text.encode())

    def replicas(self):
        return None

    def close(self):
        self.closed = True


class EchoBackend:
    name = "echo"
    remote = False
    default_parallel = 1
    settings_schema = {"type": "object", "properties": {"delay_s": {"type": "number", "minimum": 0}}}
    honoured = {
        "createChatCompletion": GENERATION_FIELDS | {"messages", "x-localai-extensions.top_k", "x-localai-extensions.min_p"},
        "createCompletion": GENERATION_FIELDS | {"prompt", "x-localai-extensions.top_k"},
        "createEmbedding": frozenset({"model", "input", "encoding_format"}),
    }

    def honoured_for(self, settings: LocalSettings):
        return self.honoured

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


class OverlapCounter:
    """Counts overlaps on real backends: :meth:`wrap` puts a counting layer around each instance
    they load, and a generation (or an embedding) that starts on an instance another one is
    still using is an overlap. A generation uses its instance from the call of ``chat`` or
    ``complete`` (which may already work, e.g. tokenize) until its pieces are exhausted, fail or
    are closed."""

    def __init__(self) -> None:
        self.overlaps = 0
        self.runs = 0
        """Generations and embeddings that used a counted instance (0: nothing was counted)."""
        self.stopped = 0
        """Generations that ended with ``should_stop()`` true (a client went away)."""
        self._lock = threading.Lock()

    def wrap(self, backends: BackendRegistry, *names: str) -> BackendRegistry:
        for name in names:
            backend = backends.get(name)
            backends.register(name, lambda backend=backend: _CountedBackend(backend, self))
        return backends


class _CountedBackend:
    def __init__(self, backend, counter: OverlapCounter) -> None:
        self._backend = backend
        self._counter = counter
        self.name = backend.name
        self.settings_schema = backend.settings_schema
        self.honoured = backend.honoured
        self.remote = backend.remote
        self.default_parallel = backend.default_parallel

    def honoured_for(self, settings: LocalSettings):
        return self._backend.honoured_for(settings)

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        return self._backend.check(settings, operations)

    def load(self, settings: LocalSettings, *args, **kwargs) -> _CountedInstance:
        return _CountedInstance(self._backend.load(settings, *args, **kwargs), self._counter)


class _CountedInstance:
    batching = False
    """Even around a batching instance: loaded ``parallel`` times, each counts its own overlaps."""

    def __init__(self, instance, counter: OverlapCounter) -> None:
        self._instance = instance
        self._counter = counter
        self._users = 0

    def _enter(self) -> None:
        with self._counter._lock:
            self._users += 1
            self._counter.runs += 1
            if self._users > 1:
                self._counter.overlaps += 1

    def _leave(self, stopped: bool = False) -> None:
        with self._counter._lock:
            self._users -= 1
            self._counter.stopped += stopped

    def _generation(self, method, request, should_stop) -> Iterator[Piece]:
        self._enter()
        try:
            pieces = method(request, should_stop)
        except BaseException:
            self._leave()
            raise
        return _CountedPieces(pieces, lambda: self._leave(should_stop()))

    def chat(self, request, should_stop, tools, response_format):
        chat = functools.partial(self._instance.chat, tools=tools, response_format=response_format)
        return self._generation(chat, request, should_stop)

    def complete(self, request, should_stop):
        return self._generation(self._instance.complete, request, should_stop)

    def embed(self, inputs):
        self._enter()
        try:
            return self._instance.embed(inputs)
        finally:
            self._leave()

    def tokenize(self, text):
        return self._instance.tokenize(text)

    @property
    def kv_usage(self) -> float:
        return self._instance.kv_usage

    def replicas(self):
        return self._instance.replicas()

    def close(self) -> None:
        self._instance.close()


class _CountedPieces:
    """A generation's pieces; its end (exhausted, failed or closed) is reported once."""

    def __init__(self, pieces: Iterator[Piece], ended) -> None:
        self._pieces = pieces
        self._ended = ended
        self._open = True

    def __iter__(self) -> _CountedPieces:
        return self

    def __next__(self) -> Piece:
        try:
            return next(self._pieces)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                getattr(self._pieces, "close", lambda: None)()
            finally:
                self._ended()
