"""What one generation samples with, read from its request once (:mod:`..sampling` reads it).

The defaults here are the only ones: a value the request leaves out keeps its field's default.
The engine's :class:`~.slot_sampling.SlotSampler` reads the sampler's fields; the request's
reader loop reads ``max_tokens`` and ``stop``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from localai_runtime.backends.llama_cpp.engine.grammar import LazyGrammar

Bias = tuple[np.ndarray, np.ndarray]
"""Token ids, and the values added to their logits."""


@dataclass(frozen=True, eq=False)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_last_n: int = 64
    """Tokens the penalties look back on (resolved: never -1)."""
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None
    """None: llama.cpp's random seed."""
    bias: Bias | None = None
    """The logit bias (``ignore_eos`` bans the end-of-generation tokens here)."""
    top_logprobs: int | None = None
    """None: no logprobs; 0: the chosen token's only."""
    grammar: LazyGrammar | None = None
    max_tokens: int | None = None
    """None: up to the end of the context."""
    stop: tuple[str, ...] = ()
    n: int = 1
    """Choices per prompt."""

    def for_choice(self, number: int) -> SamplingParams:
        """The params of a prompt's ``number``-th choice: their seeds count up from the request's."""
        return self if self.seed is None else replace(self, seed=(self.seed + number) % 2**32)
