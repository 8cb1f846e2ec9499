"""The ``llama-cpp`` backend: GGUF models through llama-cpp-python's low-level API.

A model file is loaded once per way of loading it (:mod:`.engine.shared`); every registration
that loads it that way gets an instance over the same weights. Generation runs in the model's
continuous-batching engine (:mod:`.engine`): ``parallel: N`` is N slots in one llama.cpp context,
one ``llama_decode`` per step for all of them, each slot with its own sampler (llama.cpp's
sampler chain, grammars, logit bias, logprobs) and prefix reuse across requests.

A request's worker thread renders the prompt with the registration's ``template`` or the GGUF's
own ``tokenizer.chat_template`` (ChatML when it has none) through llama-cpp-python's
``Jinja2ChatFormatter``, turns ``response_format`` into a GBNF grammar, submits the prompt to
the engine and reads its tokens: it decodes token bytes with an incremental UTF-8 decoder, holds
back text that may begin a stop sequence, and counts tokens. ``n > 1`` generates its choices one
after another (the second reuses the first's prompt from the cache). Embeddings use a context of
their own opened on the same weights on first use. Token ids are embedded as given.
Modules: ``backend`` (what it honours, its settings, checks), ``instance`` (a registration's
instance: prompts, embeddings), ``generation`` (a request's choices), ``decoding`` (a generation's
token loop), ``tool_calls`` (the call grammar and the two-phase ``auto``), ``tokens`` (text to
token ids and back, tokenize and detokenize), ``sampling`` (a request's sampling values, grammars,
logit bias, read once), ``embedding`` (one token sequence through the embedding context) and
``engine/``. Only ``localai_runtime.backends``, :mod:`localai_runtime.errors` and
:mod:`localai_runtime.tools` are imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from localai_runtime.backends.llama_cpp.backend import (
        HONOURED,
        HONOURED_EXTENSIONS,
        SETTINGS_SCHEMA,
        LlamaCppBackend,
    )
    from localai_runtime.backends.llama_cpp.instance import LlamaCppInstance

__all__ = ["HONOURED", "HONOURED_EXTENSIONS", "SETTINGS_SCHEMA", "LlamaCppBackend", "LlamaCppInstance"]


def __getattr__(name: str) -> Any:
    """The backend's names on first use: loading a model early at start-up
    (:mod:`localai_runtime.backends.prewarm`) needs only :mod:`.engine`, not templates and tools."""
    if name == "LlamaCppInstance":
        from localai_runtime.backends.llama_cpp.instance import LlamaCppInstance

        return LlamaCppInstance
    if name in __all__:
        from localai_runtime.backends.llama_cpp import backend

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
