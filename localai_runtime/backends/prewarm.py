"""Loading preloaded llama-cpp models while the server is still starting.

Loading a model's weights is C code that releases the GIL, and so is opening its context; the server's own
start-up (imports, the document, validating registrations) is Python. :func:`prewarm` reads the
registration files as they stand, and in a thread of its own loads what a valid ``preload: true``
llama-cpp registration will ask for, with the exact settings it will ask with, so the two overlap.
The registration's own load then finds the model in
:mod:`localai_runtime.backends.llama_cpp.engine.shared` and takes another reference;
the prewarm lets go of its own once that happened (or after :data:`HOLD_S`, when the registration
turned out invalid or changed), so nothing it loaded outlives its use. Any error here is only
logged: the real load reports it. This module imports llama-cpp only in its thread.

Python code runs one thread at a time, so start-up waits for this thread's own Python part
(reading the files, importing llama-cpp) before going on, so that llama.cpp starts loading at
once rather than after imports that take turns with the main thread's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localai_runtime.backends.abstract import below_the_event_loop

logger = logging.getLogger(__name__)

HOLD_S = 120.0
FIRST_S = 5.0
"""How long start-up waits at most for the early load's imports."""
_GENERATING = {"createChatCompletion", "createCompletion", "createResponse"}


def prewarm(configs_dir: Path | None) -> threading.Thread | None:
    """Start loading the preloaded llama-cpp models of ``configs_dir`` in a daemon thread; return
    once it has read the files and imported llama-cpp, about to load (or found nothing to load,
    or after :data:`FIRST_S`)."""
    if configs_dir is None:
        return None
    loading = threading.Event()
    thread = threading.Thread(target=_run, args=(configs_dir, loading), name="llama-cpp-prewarm", daemon=True)
    thread.start()
    loading.wait(FIRST_S)
    return thread


def _run(configs_dir: Path, loading: threading.Event) -> None:
    below_the_event_loop()  # the engine's threads started here inherit it
    try:
        held = _load(configs_dir, loading)
    finally:
        loading.set()
    deadline = time.monotonic() + HOLD_S
    while held and time.monotonic() < deadline:
        for model in [model for model in held if model.references > 1]:  # its registration has it now
            held.remove(model)
            model.release()
        time.sleep(0.05)
    for model in held:
        model.release()


def _load(configs_dir: Path, loading: threading.Event) -> list[Any]:
    held: list[Any] = []
    try:
        wanted = list(_preloaded(configs_dir))
        if wanted:
            from localai_runtime.backends.llama_cpp.engine.shared import share
        loading.set()
        for settings, generates in wanted:
            model = share(settings)
            if model in held:  # two registrations load it the same way: one reference will do
                model.release()
            else:
                held.append(model)
            if generates:
                model.engine()
    except Exception as exc:  # noqa: BLE001 - the registration's own load reports what is wrong
        logger.debug("prewarming llama-cpp models failed: %s", exc)
    return held


def _preloaded(configs_dir: Path) -> Iterator[tuple[Any, bool]]:
    """``(LocalSettings, generates)`` of each preloaded llama-cpp registration, as the registry
    will build them."""
    from localai_runtime.backends.abstract import LocalSettings
    from localai_runtime.model_packages import model_path
    from localai_runtime.spec.files import entries, files_in

    for path in files_in(configs_dir):
        for raw in entries(path):
            values = raw.get("local_settings") if isinstance(raw, dict) else None
            if not isinstance(values, dict) or values.get("backend") != "llama-cpp" or not values.get("preload"):
                continue
            operations = set((raw.get("registration") or {}).get("operations") or ())
            yield (LocalSettings("llama-cpp", model_path(path, values.get("model_file")), dict(values)),
                   bool(_GENERATING & operations))
