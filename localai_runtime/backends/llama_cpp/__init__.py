"""The ``llama-cpp`` backend: GGUF models through llama-cpp-python.

Generation drives ``Llama.generate`` (llama.cpp's sampler chain, grammars, penalties, seeds)
with this module's own loop instead of ``create_completion(stream=True)``, which in 0.3.x
lets a multi-byte character cut by ``max_tokens`` run past the limit, drops invalid bytes
silently and reports no token counts when streaming. The loop decodes token bytes with an
incremental UTF-8 decoder, holds back text that may begin a stop sequence, counts tokens,
and polls ``should_stop`` after every token.

Chat prompts are rendered with the registration's ``template`` or the GGUF's own
``tokenizer.chat_template`` (ChatML when it has none) through llama-cpp-python's
``Jinja2ChatFormatter``; ``response_format`` becomes a GBNF grammar. The prompt is evaluated a
batch at a time, polling ``should_stop`` between batches, so a client that leaves during a long
prompt stops it; the prefix already in the context's cache is reused. Embeddings use a second
``Llama`` created with ``embedding=True`` on first use (weights are shared through mmap); an
instance loaded only for embeddings opens that context alone. Token ids are embedded as given.
Modules: ``backend`` (what it honours, its settings, checks), ``instance`` (a loaded model:
prompts, the generation loop, logprobs), ``tokens`` (text to token ids and back, tokenize and
detokenize), ``sampling`` (a request's sampler settings, grammars, logit bias) and ``embedding``
(one token sequence through the embedding context). Only ``localai_runtime.backends`` and
:mod:`localai_runtime.errors` are imported here.
"""

from __future__ import annotations

from localai_runtime.backends.llama_cpp.backend import HONOURED, HONOURED_EXTENSIONS, SETTINGS_SCHEMA, LlamaCppBackend
from localai_runtime.backends.llama_cpp.instance import LlamaCppInstance

__all__ = ["HONOURED", "HONOURED_EXTENSIONS", "SETTINGS_SCHEMA", "LlamaCppBackend", "LlamaCppInstance"]
