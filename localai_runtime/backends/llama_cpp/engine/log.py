"""Where llama.cpp's log goes (one setting for the whole process, as ``Llama(verbose=...)`` has it).

Verbose: every line through llama-cpp-python's logger. Otherwise warnings and errors, to stderr,
through a callback written in C (``_log_sink``, built with the package where a C compiler is at
hand): llama-cpp-python's callback is Python, so each line llama.cpp logs waits for the
interpreter's lock, and a model's load logs well over a thousand lines. (Not verbose,
llama-cpp-python's callback also drops llama.cpp's errors: its table of levels predates ggml's
numbering.) Without the extension the Python callback is used.
"""

from __future__ import annotations

import ctypes

import llama_cpp
from llama_cpp import _logger

try:
    from localai_runtime.backends.llama_cpp.engine import _log_sink  # type: ignore[attr-defined]  # a C module
except ImportError:  # not compiled here
    _log_sink = None

WARNINGS_IN_C = (llama_cpp.llama_log_callback(_log_sink.address()) if _log_sink is not None else None)
"""The C callback (None where the extension was not built)."""


def route(verbose: bool) -> None:
    """Send llama.cpp's log, process-wide, to llama-cpp-python's logger (``verbose``) or, warnings
    and errors only, to the C callback."""
    _logger.set_verbose(verbose)
    if verbose or WARNINGS_IN_C is None:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    else:
        llama_cpp.llama_log_set(WARNINGS_IN_C, ctypes.c_void_p(0))
