"""One token sequence through a llama-cpp embedding context, pooled as the model declares."""

from __future__ import annotations

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals


def embed_tokens(context: internals.LlamaContext, batch: internals.LlamaBatch, width: int,
                 tokens: list[int]) -> np.ndarray:
    """One sequence through the embedding context (what ``Llama.embed`` does per input, on token
    ids instead of text); the caller holds the context for itself meanwhile."""
    batch.reset()
    batch.add_sequence(tokens, 0, True)  # every token an output, as Llama.embed marks them
    context.kv_cache_clear()
    try:
        context.decode(batch)
    finally:
        batch.reset()
    if context.pooling_type() == llama_cpp.LLAMA_POOLING_TYPE_NONE:  # one vector per token
        pointer = llama_cpp.llama_get_embeddings(context.ctx)
        return np.ctypeslib.as_array(pointer, shape=(len(tokens), width)).astype(np.float64).mean(axis=0)
    pointer = llama_cpp.llama_get_embeddings_seq(context.ctx, 0)
    return np.ctypeslib.as_array(pointer, shape=(width,)).astype(np.float64)
