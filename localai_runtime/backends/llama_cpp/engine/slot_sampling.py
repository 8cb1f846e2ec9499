"""One request's sampling on a row of the batch's logits, in the scheduler thread.

The row is a view of llama.cpp's own logits buffer. Logprobs are taken from the model's logits
first; then the logit bias is added in place, the grammar masks what it forbids (the most likely
tokens are checked first, as llama.cpp's server does), and the token is chosen: by argmax in
numpy where the request is greedy without penalties (no vocabulary-sized candidate array built
in C++ per token), else by llama.cpp's sampler chain (penalties, top_k, typical, top_p, min_p,
temperature, mirostat, seeded distribution) reading the modified row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np

from localai_runtime.backends.llama_cpp.engine.params import SamplingParams
from localai_runtime.errors import InvalidRequestError

Entry = Callable[[int, float], dict[str, Any]]
"""A token and its logprob as OpenAI's logprob entry."""


class GrammarDeadEnd(InvalidRequestError):
    """The grammar allows no token where the model must write one."""


class SlotSampler:
    def __init__(self, n_vocab: int, params: SamplingParams, entry: Entry) -> None:
        self.n_vocab = n_vocab
        self._bias = params.bias
        self._top = params.top_logprobs
        self._entry = entry
        self._grammar = params.grammar.start() if params.grammar is not None else None
        penalties = (params.repeat_penalty != 1.0 or params.frequency_penalty != 0.0
                     or params.presence_penalty != 0.0) and params.repeat_last_n != 0
        self.greedy = float(params.temperature) == 0.0 and not penalties
        self._chain = None if self.greedy else _chain(n_vocab, params, penalties)
        self._penalty_window = params.repeat_last_n if penalties else 0
        """Prompt tokens the penalties see (0: no penalties)."""

    def accept_prompt(self, prompt: list[int]) -> None:
        """Let the penalties see the prompt's last ``repeat_last_n`` tokens, as llama.cpp's server does."""
        if self._chain is not None and self._penalty_window:
            for token in prompt[-self._penalty_window:]:
                llama_cpp.llama_sampler_accept(self._chain, token)

    def sample(self, ctx: Any, index: int) -> tuple[int, dict[str, Any] | None]:
        """The next token from output ``index`` of the last decode, and its logprob entry."""
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        logprobs = self._logprob(row) if self._top is not None else None
        if self._bias is not None:
            ids, values = self._bias
            row[ids] += values
        allowed = None
        if self._grammar is not None:
            allowed = self._grammar.allowed(row)
            if allowed.size == 0:
                raise GrammarDeadEnd("the grammar allows no token to continue the output", param=self._grammar.param)
        if self.greedy:
            token = int(row.argmax()) if allowed is None else int(allowed[row[allowed].argmax()])
        else:
            if allowed is not None:
                kept = row[allowed].copy()
                row[:] = -np.inf
                row[allowed] = kept
            token = llama_cpp.llama_sampler_sample(self._chain, ctx, index)
        if self._grammar is not None:
            self._grammar.accept(token)
        return token, None if logprobs is None else self._describe(row_logprobs=logprobs, token=token)

    def _logprob(self, row: np.ndarray) -> np.ndarray:
        logits = row.astype(np.float64)
        peak = logits.max()
        return logits - (peak + np.log(np.exp(logits - peak).sum()))

    def _describe(self, row_logprobs: np.ndarray, token: int) -> dict[str, Any]:
        best: Any = ()
        if self._top:  # the top few without sorting the whole vocabulary
            count = min(self._top, self.n_vocab)
            best = np.argpartition(-row_logprobs, count - 1)[:count]
            best = best[np.argsort(-row_logprobs[best], kind="stable")]
        entry = self._entry(token, float(row_logprobs[token]))
        entry["top_logprobs"] = [self._entry(int(t), float(row_logprobs[t])) for t in best]
        return entry

    def close(self) -> None:
        if self._grammar is not None:
            self._grammar.close()
            self._grammar = None
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


def _chain(n_vocab: int, params: SamplingParams, penalties: bool) -> Any:
    """llama.cpp's sampler chain in llama-cpp-python's order (what ``Llama.generate`` used)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    temp = float(params.temperature)
    seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
    if penalties:
        add(llama_cpp.llama_sampler_init_penalties(n_vocab, params.repeat_last_n, params.repeat_penalty,
                                                   params.frequency_penalty, params.presence_penalty))
    tau, eta = params.mirostat_tau, params.mirostat_eta
    if temp < 0.0:
        add(llama_cpp.llama_sampler_init_dist(seed))
    elif temp == 0.0:
        add(llama_cpp.llama_sampler_init_greedy())
    elif params.mirostat == 1:
        add(llama_cpp.llama_sampler_init_mirostat(n_vocab, seed, tau, eta, 100))
    elif params.mirostat == 2:
        add(llama_cpp.llama_sampler_init_mirostat_v2(seed, tau, eta))
    else:
        add(llama_cpp.llama_sampler_init_top_k(int(params.top_k)))
        add(llama_cpp.llama_sampler_init_typical(params.typical_p, 1))
        add(llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        add(llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(llama_cpp.llama_sampler_init_temp(temp))
        add(llama_cpp.llama_sampler_init_dist(seed))
    return chain
