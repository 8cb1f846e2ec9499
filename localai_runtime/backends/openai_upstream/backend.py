"""The ``openai-upstream`` adapter: what it serves and honours (per registration), its start-up
checks, and instances that share one :class:`~.client.Upstream` per registration."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from localai_runtime.backends.abstract import LocalSettings, Pieces
from localai_runtime.backends.openai_upstream.client import Upstream
from localai_runtime.backends.openai_upstream.replicas import ReplicaSet
from localai_runtime.backends.openai_upstream.settings import DEFAULT_PARALLEL, SETTINGS_SCHEMA, UpstreamSettings
from localai_runtime.backends.openai_upstream.transport import Origin

if TYPE_CHECKING:
    from localai_runtime.tools.request import ToolRequest
    from localai_runtime.tools.response_format import ResponseFormat

EXTENSION_PREFIX = "x-localai-extensions."
SERVED = ("createChatCompletion", "createCompletion", "createEmbedding")


class AllFields(frozenset):
    """``honoured: all``: every documented field (an extension key only when listed by name)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and not name.startswith(EXTENSION_PREFIX)


class OpenAIUpstreamBackend:
    name = "openai-upstream"
    settings_schema = SETTINGS_SCHEMA
    honoured: Mapping[str, frozenset[str]] = {operation: AllFields() for operation in SERVED}
    default_parallel = DEFAULT_PARALLEL
    remote = True
    """Requests are relayed on the event loop (``localai_runtime.serving.upstream``), not run in threads."""

    def __init__(self) -> None:
        self._shared: dict[int, tuple[Upstream, int]] = {}
        self._honoured: dict[int, tuple[LocalSettings, Mapping[str, frozenset[str]]]] = {}
        self._lock = threading.Lock()

    def honoured_for(self, settings: LocalSettings) -> Mapping[str, frozenset[str]]:
        table = self._honoured.get(id(settings))
        if table is None or table[0] is not settings:  # keyed by identity: keep the settings alive
            listed = UpstreamSettings.parse(settings.values).honoured
            fields = AllFields() if listed is None else listed
            if len(self._honoured) > 1024:  # configurations replaced by reloads
                self._honoured.clear()
            table = self._honoured[id(settings)] = (settings, {operation: fields for operation in SERVED})
        return table[1]

    def listed_fields(self, settings: LocalSettings) -> list[str] | None:
        """The fields ``honoured`` lists (None: all), checked by the registration loader."""
        listed = settings.get("honoured", "all")
        return None if listed == "all" else list(listed)

    def check(self, settings: LocalSettings, operations: frozenset[str]) -> list[str]:
        problems = []
        seen: dict[Origin, int] = {}
        for index, url in enumerate(settings.get("base_urls") or ()):
            try:
                origin = Origin.parse(url)
            except ValueError as exc:
                problems.append(f"base_urls[{index}]: {url!r} is not usable: {exc}")
                continue
            if origin in seen:
                problems.append(f"base_urls[{index}]: {url!r} is the same replica as base_urls[{seen[origin]}]")
            seen.setdefault(origin, index)
        if problems:
            return problems
        parsed = UpstreamSettings.parse(settings.values)
        if parsed.api_key_env and parsed.api_key() is None:
            problems.append(f"api_key_env: the environment variable {parsed.api_key_env} is not set")
        if settings.model_file is not None:
            problems.append("model_file: an openai-upstream registration has no model file (the upstream has it)")
        return problems

    def load(self, settings: LocalSettings, operations: frozenset[str] | None = None) -> UpstreamInstance:
        with self._lock:
            upstream, users = self._shared.get(id(settings), (None, 0))
            if upstream is None:
                parallel = int(settings.get("parallel", DEFAULT_PARALLEL))
                upstream = Upstream(UpstreamSettings.parse(settings.values), parallel)
            self._shared[id(settings)] = (upstream, users + 1)
        return UpstreamInstance(self, settings, upstream)

    def release(self, settings: LocalSettings) -> None:
        with self._lock:
            upstream, users = self._shared.pop(id(settings), (None, 0))
            if upstream is not None and users > 1:
                self._shared[id(settings)] = (upstream, users - 1)
                return
        if upstream is not None:
            upstream.close_soon()


class UpstreamInstance:
    """A lease's view of the registration's upstream (the pool lends ``parallel`` of them)."""

    batching = False  # the pool loads ``parallel`` views of the one upstream
    kv_usage = 0.0  # the upstream's cache is its own

    def __init__(self, backend: OpenAIUpstreamBackend, settings: LocalSettings, upstream: Upstream) -> None:
        self._backend = backend
        self._settings = settings
        self.upstream = upstream
        self._closed = False

    def replicas(self) -> ReplicaSet:
        return self.upstream.replicas

    # The blocking contract of local backends does not apply: serving relays these requests.
    def chat(self, request: Mapping[str, Any], should_stop: Any, tools: ToolRequest,
             response_format: ResponseFormat) -> Pieces:
        raise NotImplementedError("openai-upstream requests are relayed by localai_runtime.serving.upstream")

    def complete(self, request: Mapping[str, Any], should_stop: Any) -> Pieces:
        raise NotImplementedError("openai-upstream requests are relayed by localai_runtime.serving.upstream")

    def embed(self, inputs: Any) -> tuple[list[list[float]], int]:
        raise NotImplementedError("openai-upstream requests are relayed by localai_runtime.serving.upstream")

    @property
    def context_size(self) -> int:
        return 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend.release(self._settings)

