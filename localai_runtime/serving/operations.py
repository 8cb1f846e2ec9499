"""The serving object of each operation handlers call (:class:`~localai_runtime.serving.base.Serving`).

Chat and completions share the text path (``text``), embeddings and tokenize (tokenize,
detokenize) have their own; the Responses API has its own in :mod:`localai_runtime.responses`.
Adding an API is a :class:`~localai_runtime.serving.base.Serving` subclass and a row here.
"""

from __future__ import annotations

from localai_runtime.serving.chat import ChatServing
from localai_runtime.serving.completions import CompletionServing
from localai_runtime.serving.embeddings import EmbeddingServing
from localai_runtime.serving.tokenize import DetokenizeServing, TokenizeServing

CHAT = ChatServing()
COMPLETION = CompletionServing()
EMBEDDING = EmbeddingServing()
TOKENIZE = TokenizeServing()
DETOKENIZE = DetokenizeServing()
