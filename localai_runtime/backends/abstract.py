"""The backend adapter contract.

A :class:`Backend` is found by name in the registry (:mod:`localai_runtime.backends`). It
declares the JSON Schema of its ``local_settings``, the request fields it honours per
operation (a table, so nothing is silently ignored), checks a registration at start-up, and
loads a :class:`ModelInstance`.

Instances are blocking: the server calls them from worker threads, one generation at a time
per instance. Generation methods are generators of :class:`Piece` so that tokens stream as
they are produced; ``should_stop`` is polled between tokens (a client disconnected).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from localai_runtime.backends.openai_upstream.replicas import ReplicaSet
    from localai_runtime.tools.request import ToolRequest
    from localai_runtime.tools.response_format import ResponseFormat

COMMON_SETTINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["backend"],
    "properties": {
        "backend": {"type": "string", "description": "Name of the backend adapter."},
        "model_file": {"type": "string", "description": "Model file, relative to the registration file."},
        "template": {"type": "string", "description": "Chat template (Jinja) overriding the model's own."},
        "threads": {"type": "integer", "minimum": 1, "maximum": 512},
        "context_size": {"type": "integer", "minimum": 16, "maximum": 1048576},
        "parallel": {"type": "integer", "minimum": 1, "maximum": 64,
                     "description": ("Generations served at once: for llama-cpp, slots in one context "
                                     "(one copy of the weights, KV cache for each); for others, instances.")},
        "preload": {"type": "boolean", "description": "Load at start-up instead of on first use, and keep loaded."},
        "idle_unload_seconds": {"type": "number", "minimum": 0, "description": (
            "Unload the model this long after its last request ended (default: keep it loaded).")},
    },
}


@dataclass(frozen=True)
class LocalSettings:
    """A registration's ``local_settings``, validated, with the model file resolved."""

    backend: str
    model_file: Path | None
    values: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


@dataclass
class Piece:
    """A piece of generated output for one choice."""

    text: str = ""
    index: int = 0
    finish_reason: str | None = None  # "stop" | "length" set on the last piece of a choice
    logprobs: Any = None
    prompt_tokens: int = 0  # set on a choice's last piece
    completion_tokens: int = 0  # set on a choice's last piece
    cached_tokens: int = 0  # set on a choice's last piece: prompt tokens taken from a cache
    tool_calls: list[Any] | None = None  # CallDelta: a call's name once, then its argument text
    stop_sequence: str | None = None  # set on a choice's last piece: the stop string that ended it


ShouldStop = Callable[[], bool]
Pieces = Generator[Piece, None, None]
"""What ``chat`` and ``complete`` return: generated lazily, closed by the server when a request ends early."""

INFERENCE_NICENESS = 5


def below_the_event_loop() -> None:
    """Run this thread, and the compute threads a backend starts from it (Linux threads inherit
    their creator's niceness), below the event loop: with every core busy generating, health
    checks, stream writes and 429s still get the CPU at once. Inference threads and the thread
    that loads models early both call it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INFERENCE_NICENESS)
    except (AttributeError, OSError) as exc:  # not Linux, or not permitted: run as is
        logging.getLogger(__name__).debug("could not lower the inference thread's priority: %s", exc)


@runtime_checkable
class ModelInstance(Protocol):
    def chat(self, request: Mapping[str, Any], should_stop: ShouldStop, tools: ToolRequest,
             response_format: ResponseFormat) -> Pieces:
        """``tools``: the request's tools, parsed and checked once by the serving layer."""
        ...

    def complete(self, request: Mapping[str, Any], should_stop: ShouldStop) -> Pieces: ...

    def embed(self, inputs: list[str] | list[list[int]]) -> tuple[list[list[float]], int]:
        """Embeddings of each input, and the prompt tokens used."""
        ...

    def tokenize(self, text: str) -> list[int]: ...

    def tokenize_request(self, request: Mapping[str, Any], tools: ToolRequest) -> tuple[list[int], list[str] | None]:
        """The tokens of a ``tokenize`` request (the fields the backend declares it honours), and
        with ``return_token_strs`` each token's string in the vocabulary (else None). Its
        ``prompt`` is tokenized as a completion prompt is; its ``messages`` (and ``tools``) are
        rendered exactly as ``chat`` renders them, so the count equals that chat's prompt tokens.
        A prompt longer than the context is counted, not refused, where the backend can."""
        ...

    def detokenize(self, tokens: list[int]) -> str:
        """The text of ``tokens``, special tokens written as their text; an id outside the
        vocabulary is a 400 naming ``tokens``."""
        ...

    @property
    def context_size(self) -> int:
        """The context in tokens (``max_model_len``)."""
        ...

    @property
    def batching(self) -> bool:
        """True: one instance runs ``parallel`` generations at once, so the pool loads it once
        and lends it ``parallel`` times; False: the pool loads ``parallel`` instances."""
        ...

    @property
    def kv_usage(self) -> float:
        """The share (0 to 1) of the KV cache running requests hold; 0 without a shared cache."""
        ...

    def replicas(self) -> ReplicaSet | None:
        """The upstream replicas the instance relays to (openai-upstream); None for a local model."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Backend(Protocol):
    name: str
    settings_schema: Mapping[str, Any]
    """JSON Schema of the backend's own ``local_settings`` keys (besides the common ones)."""
    honoured: Mapping[str, frozenset[str]]
    """operationId -> the request fields this backend honours for it."""
    remote: bool
    """True: requests are relayed to an engine elsewhere (no model is loaded here)."""
    default_parallel: int
    """Generations at once where a registration sets no ``parallel``."""

    def honoured_for(self, settings: LocalSettings) -> Mapping[str, frozenset[str]]:
        """The ``honoured`` table for one registration's ``settings`` (``honoured`` itself where
        it does not vary per registration)."""
        ...

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        """Problems found without loading (missing file, operation it cannot serve)."""
        ...

    def load(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> ModelInstance:
        """An instance for the registration's ``operations`` (None: every operation the backend
        serves), so it need not open what no operation uses."""
        ...
