"""Backend adapters by name, from the ``localai_runtime.backends`` entry-point group.

Adapters are found by name through the entry-point group, so a third party adds one with
``pip install``; this project's own adapters are declared the same way in ``setup.cfg``. An
adapter whose package is missing fails only the registrations that use it, with a message saying
what to install.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable

from localai_runtime.backends.abstract import Backend
from localai_runtime.errors import SpecError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "localai_runtime.backends"

PIP_NAMES = {"llama_cpp": "llama-cpp-python", "gpt4all": "gpt4all"}
"""Import name -> the pip package that provides it, for install hints."""


class BackendUnavailable(SpecError):
    """The adapter exists but cannot be used here (its package is not installed)."""


class BackendRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, Callable[[], Backend]] = {}
        self._backends: dict[str, Backend] = {}

    @classmethod
    def from_entry_points(cls) -> BackendRegistry:
        registry = cls()
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            registry.register(entry.name, entry.load)
        return registry

    def register(self, name: str, factory: Callable[[], Backend]) -> None:
        """``factory`` is called on first use; it may raise ImportError for a missing package."""
        self._factories[name] = factory
        self._backends.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Backend:
        if name in self._backends:
            return self._backends[name]
        factory = self._factories.get(name)
        if factory is None:
            raise SpecError(f"unknown backend {name!r}; available: {', '.join(self.names()) or 'none'}")
        try:
            backend = factory()
            if isinstance(backend, type):
                backend = backend()
        except ImportError as exc:
            missing = exc.name or "?"
            package = PIP_NAMES.get(missing.split(".")[0], missing.split(".")[0])
            raise BackendUnavailable(
                f"backend {name!r} cannot be used: {exc} (install it with: pip install {package})"
            ) from exc
        self._backends[name] = backend
        return backend
