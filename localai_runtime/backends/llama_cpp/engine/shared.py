"""A model file loaded once for every registration that loads it the same way.

Registrations whose ``local_settings`` agree on the file and on everything that shapes the
loaded model and its context (threads, context size, slots, batch sizes, offloading...) get one
:class:`SharedModel`: one copy of the weights, one batching engine opened when a registration
first generates, one embedding context opened when one first embeds. It is closed when the last
registration using it lets go. Templates, tool-call formats and seeds stay per registration.
"""

from __future__ import annotations

import functools
import os
import threading
from functools import cached_property
from typing import Any

import llama_cpp
from llama_cpp import _internals as internals

from localai_runtime.backends._text import DEFAULT_CONTEXT_SIZE
from localai_runtime.backends.abstract import LocalSettings
from localai_runtime.backends.llama_cpp.engine import log
from localai_runtime.backends.llama_cpp.engine.scheduler import Engine

_KEYS = ("threads", "context_size", "parallel", "n_gpu_layers", "main_gpu", "n_batch", "n_ubatch", "use_mmap",
         "use_mlock", "flash_attn", "rope_freq_base", "rope_freq_scale", "verbose")
_DEFAULTS = {"context_size": DEFAULT_CONTEXT_SIZE, "parallel": 1}
DEFAULT_BATCH = 2048
"""Tokens per decode (llama-server's default): prompt chunks fill what decoding slots leave."""

_lock = threading.Lock()
_models: dict[tuple[Any, ...], SharedModel] = {}


def share(settings: LocalSettings) -> SharedModel:
    """The loaded model for ``settings`` (loading it, or taking another reference to it);
    :meth:`SharedModel.release` it once."""
    key = (str(settings.model_file), *(settings.get(k, _DEFAULTS.get(k)) for k in _KEYS))
    with _lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = SharedModel(key, settings)
        model.references += 1
    try:
        model.load()
    except BaseException:
        model.release()
        raise
    return model


@functools.cache
def _has_amx() -> bool:
    """Whether this CPU has AMX (read once: every model load asks)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return " amx_int8" in info.read()
    except OSError:
        return False


class SharedModel:
    def __init__(self, key: tuple[Any, ...], settings: LocalSettings) -> None:
        self._key = key
        self._settings = settings
        self.references = 0
        self._lock = threading.Lock()
        self.weights: internals.LlamaModel | None = None
        self._engine: Engine | None = None
        self._embedder: tuple[internals.LlamaContext, internals.LlamaBatch] | None = None
        self.embedding_lock = threading.Lock()
        """Held while the embedding context computes (one input at a time)."""

    def load(self) -> None:
        with self._lock:
            if self.weights is not None:
                return
            settings = self._settings
            params = llama_cpp.llama_model_default_params()
            layers = settings.get("n_gpu_layers", 0)
            params.n_gpu_layers = 0x7FFFFFFF if layers == -1 else layers
            params.main_gpu = settings.get("main_gpu", 0)
            if _has_amx():
                # llama.cpp's AMX weight buffers crash in ggml_backend_amx_mul_mat (seen with
                # llama-cpp-python 0.3.35 and 0.3.36 on Gemma 3 with the Agents SDK's prompt,
                # SIGSEGV in llama_decode): on a CPU with AMX the weights stay in plain CPU buffers.
                params.use_extra_bufts = False
            mmap, mlock = settings.get("use_mmap", True), settings.get("use_mlock", False)
            params.load_mode = {(True, True): llama_cpp.LLAMA_LOAD_MODE_MMAP_MLOCK,
                                (False, True): llama_cpp.LLAMA_LOAD_MODE_MLOCK,
                                (True, False): llama_cpp.LLAMA_LOAD_MODE_MMAP}.get((mmap, mlock),
                                                                                  llama_cpp.LLAMA_LOAD_MODE_NONE)
            path = settings.model_file
            log.route(bool(settings.get("verbose")))
            try:
                # verbose=True: do not point the process's stdout and stderr at /dev/null while
                # loading (what LlamaModel does otherwise), which would swallow every other
                # thread's log meanwhile; llama.cpp's own log goes where log.route sent it.
                self.weights = internals.LlamaModel(path_model=str(path), params=params, verbose=True)
            except (ValueError, RuntimeError, OSError) as exc:
                raise RuntimeError(f"llama-cpp could not load the model file {path}: {exc}") from exc

    @cached_property
    def metadata(self) -> dict[str, str]:
        assert self.weights is not None
        return self.weights.metadata()

    @cached_property
    def end_of_generation(self) -> list[int]:
        assert self.weights is not None
        vocab = self.weights.vocab
        return [t for t in range(self.weights.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    def engine(self) -> Engine:
        """The batching engine, started on first use."""
        with self._lock:
            if self._engine is None:
                assert self.weights is not None
                slots = int(self._settings.get("parallel", 1))
                params = self._context_params(self._settings.get("context_size", DEFAULT_CONTEXT_SIZE) * slots)
                params.n_seq_max = slots
                params.kv_unified = False  # a stream of context_size cells per slot, as llama-server -np N
                params.swa_full = False
                params.n_batch = max(self._settings.get("n_batch", DEFAULT_BATCH), slots)
                params.n_ubatch = min(params.n_batch, self._settings.get("n_ubatch", 512))
                try:
                    self._engine = Engine(self.weights, params, slots=slots,
                                          verbose=bool(self._settings.get("verbose")))
                except ValueError as exc:
                    raise RuntimeError(f"llama-cpp could not create a context for {self._settings.model_file}: "
                                       f"{exc}") from exc
            return self._engine

    def embedder(self) -> tuple[internals.LlamaContext, internals.LlamaBatch]:
        """The embedding context (non-causal models need a whole input in one micro-batch) and
        its batch, opened on first use."""
        with self._lock:
            if self._embedder is None:
                assert self.weights is not None
                size = self._settings.get("context_size", DEFAULT_CONTEXT_SIZE)
                params = self._context_params(size)
                params.embeddings = True
                params.n_batch = params.n_ubatch = size
                params.kv_unified = True
                context = internals.LlamaContext(model=self.weights, params=params,
                                                 verbose=bool(self._settings.get("verbose")))
                self._embedder = (context, internals.LlamaBatch(n_tokens=size, embd=0, n_seq_max=1, verbose=False))
            return self._embedder

    def _context_params(self, n_ctx: int) -> Any:
        settings = self._settings
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        threads = settings.get("threads") or max(1, (os.cpu_count() or 2) // 2)  # Llama's default
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        if settings.get("flash_attn") is not None:
            params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if settings.get("flash_attn")
                                      else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        for key in ("rope_freq_base", "rope_freq_scale"):
            if settings.get(key) is not None:
                setattr(params, key, settings.get(key))
        return params

    def release(self) -> None:
        with _lock:
            self.references -= 1
            if self.references > 0:
                return
            if _models.get(self._key) is self:
                del _models[self._key]
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
            if self._embedder is not None:
                context, batch = self._embedder
                batch.close()
                context.close()
                self._embedder = None
            if self.weights is not None:
                self.weights.close()
                self.weights = None
