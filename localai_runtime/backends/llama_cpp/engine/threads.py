"""A ggml thread pool that polls, attached to the engine's context, as llama-server attaches one.

Without it ggml starts its compute threads for every ``llama_decode`` and lets them sleep
between graph nodes; a small model's step has hundreds of short nodes, and waking threads for
each costs a tenth of the step here. llama-cpp-python 0.3 does not bind these functions, so they
are bound here from the libraries it ships; where they are missing the context keeps ggml's own
threads.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

import llama_cpp

logger = logging.getLogger(__name__)

POLL = 50
"""ggml's polling level (0: sleep at once, 100: spin longest): llama-server's default."""
_MAX_THREADS = 512  # GGML_MAX_N_THREADS


class _Params(ctypes.Structure):
    _fields_ = [("cpumask", ctypes.c_bool * _MAX_THREADS), ("n_threads", ctypes.c_int), ("prio", ctypes.c_int),
                ("poll", ctypes.c_uint32), ("strict_cpu", ctypes.c_bool), ("paused", ctypes.c_bool)]


def _bind() -> tuple[Any, Any, Any] | None:
    folder = str(getattr(llama_cpp.llama_cpp, "_base_path", os.path.join(os.path.dirname(llama_cpp.__file__), "lib")))
    try:
        base = ctypes.CDLL(os.path.join(folder, "libggml-base.so"))
        cpu = ctypes.CDLL(os.path.join(folder, "libggml-cpu.so"))
        llama = ctypes.CDLL(os.path.join(folder, "libllama.so"))
        base.ggml_threadpool_params_default.restype = _Params
        base.ggml_threadpool_params_default.argtypes = [ctypes.c_int]
        cpu.ggml_threadpool_new.restype = ctypes.c_void_p
        cpu.ggml_threadpool_new.argtypes = [ctypes.POINTER(_Params)]
        cpu.ggml_threadpool_free.argtypes = [ctypes.c_void_p]
        llama.llama_attach_threadpool.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        llama.llama_detach_threadpool.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError) as exc:
        logger.info("llama-cpp: ggml thread pools are not available (%s); using ggml's own threads", exc)
        return None
    return base, cpu, llama


_LIBRARIES = _bind()


class ThreadPool:
    """A polling pool of ``threads`` attached to ``ctx`` (or nothing, where it cannot be made)."""

    def __init__(self, ctx: Any, threads: int) -> None:
        self._ctx, self._pool = ctx, None
        if _LIBRARIES is None:
            return
        base, cpu, llama = _LIBRARIES
        params = base.ggml_threadpool_params_default(threads)
        params.poll = POLL
        self._pool = cpu.ggml_threadpool_new(ctypes.byref(params))
        if self._pool:
            llama.llama_attach_threadpool(ctx, self._pool, self._pool)

    def close(self) -> None:
        """Detach and free the pool (before the context is freed)."""
        if self._pool and _LIBRARIES is not None:
            _, cpu, llama = _LIBRARIES
            llama.llama_detach_threadpool(self._ctx)
            cpu.ggml_threadpool_free(self._pool)
        self._pool = None
