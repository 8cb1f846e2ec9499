"""Backends: what loads a model and generates with it, behind one interface.

``abstract`` holds the interface (:class:`Backend`, :class:`ModelInstance`, :class:`Piece`,
:class:`LocalSettings`), ``registry`` finds adapters by name through the
``localai_runtime.backends`` entry-point group (a third party adds one with ``pip install``; this
project's own are declared the same way in ``setup.cfg``), and each adapter has a package of its
own. ``prewarm`` loads preloaded llama-cpp models while the server starts. Anything may import
this package; it imports its own modules only, on first use of a name. The names below are
imported on first use, so that ``prewarm`` starts without the registry's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localai_runtime.backends.abstract import Backend, LocalSettings, ModelInstance, Piece, Pieces
    from localai_runtime.backends.registry import BackendRegistry, BackendUnavailable

__all__ = ["Backend", "BackendRegistry", "BackendUnavailable", "LocalSettings", "ModelInstance", "Piece", "Pieces"]
_HOMES = {"Backend": "abstract", "LocalSettings": "abstract", "ModelInstance": "abstract", "Piece": "abstract",
          "Pieces": "abstract",
          "BackendRegistry": "registry", "BackendUnavailable": "registry"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
