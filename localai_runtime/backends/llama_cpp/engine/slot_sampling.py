"""One request's sampling on a row of the batch's logits, in the scheduler thread.

The row is a view of llama.cpp's own logits buffer. Logprobs are taken from the model's logits
first; then the logit bias is added in place, the grammar masks what it forbids (the most likely
tokens are checked first, as llama.cpp's server does), and the token is chosen: by argmax in
numpy where the request is greedy without penalties (no 262,144-entry candidate array built in
C++ per token), else by llama.cpp's sampler chain (penalties, top_k, typical, top_p, min_p,
temperature, mirostat, seeded distribution) reading the modified row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from localai_runtime.errors import InvalidRequestError

if TYPE_CHECKING:
    from localai_runtime.backends.llama_cpp.sampling import LazyGrammar

Entry = Callable[[int, float], dict[str, Any]]
"""A token and its logprob as OpenAI's logprob entry."""


class GrammarDeadEnd(InvalidRequestError):
    """The grammar allows no token where the model must write one."""


class SlotSampler:
    def __init__(self, n_vocab: int, sampling: Mapping[str, Any], *, seed: int, repeat_last_n: int,
                 bias: tuple[np.ndarray, np.ndarray] | None, top_logprobs: int | None, entry: Entry) -> None:
        self.n_vocab = n_vocab
        self._bias = bias
        self._top = top_logprobs
        self._entry = entry
        grammar: LazyGrammar | None = sampling.get("grammar")
        self._grammar = grammar.start() if grammar is not None else None
        temp = float(sampling.get("temp", 1.0))
        penalties = (sampling.get("repeat_penalty", 1.0) != 1.0 or sampling.get("frequency_penalty", 0.0) != 0.0
                     or sampling.get("presence_penalty", 0.0) != 0.0) and repeat_last_n != 0
        self.greedy = temp == 0.0 and not penalties
        self._chain = None if self.greedy else _chain(n_vocab, sampling, temp, seed, repeat_last_n, penalties)
        self._penalty_window = repeat_last_n if penalties else 0
        """Prompt tokens the penalties see (0: no penalties)."""

    def accept_prompt(self, prompt: list[int]) -> None:
        """Let the penalties see the prompt's last ``repeat_last_n`` tokens, as llama.cpp's server does."""
        if self._chain is not None and self._penalty_window:
            for token in prompt[-self._penalty_window:]:
                llama_cpp.llama_sampler_accept(self._chain, token)

    def sample(self, ctx: Any, index: int) -> tuple[int, dict[str, Any] | None]:
        """The next token from output ``index`` of the last decode, and its logprob entry."""
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        logprob = self._logprob(row) if self._top is not None else None
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
        if logprob is not None:
            logprob = self._describe(row_logprobs=logprob, token=token)
        return token, logprob

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


def _chain(n_vocab: int, sampling: Mapping[str, Any], temp: float, seed: int, last_n: int, penalties: bool) -> Any:
    """llama.cpp's sampler chain in llama-cpp-python's order (what ``Llama.generate`` used)."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())

    def add(sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(chain, sampler)

    if penalties:
        add(llama_cpp.llama_sampler_init_penalties(n_vocab, last_n, sampling.get("repeat_penalty", 1.0),
                                                   sampling.get("frequency_penalty", 0.0),
                                                   sampling.get("presence_penalty", 0.0)))
    mirostat = sampling.get("mirostat_mode", 0)
    tau, eta = sampling.get("mirostat_tau", 5.0), sampling.get("mirostat_eta", 0.1)
    if temp < 0.0:
        add(llama_cpp.llama_sampler_init_dist(seed))
    elif temp == 0.0:
        add(llama_cpp.llama_sampler_init_greedy())
    elif mirostat == 1:
        add(llama_cpp.llama_sampler_init_mirostat(n_vocab, seed, tau, eta, 100))
    elif mirostat == 2:
        add(llama_cpp.llama_sampler_init_mirostat_v2(seed, tau, eta))
    else:
        add(llama_cpp.llama_sampler_init_top_k(int(sampling.get("top_k", 0))))
        add(llama_cpp.llama_sampler_init_typical(sampling.get("typical_p", 1.0), 1))
        add(llama_cpp.llama_sampler_init_top_p(sampling.get("top_p", 1.0), 1))
        add(llama_cpp.llama_sampler_init_min_p(sampling.get("min_p", 0.0), 1))
        add(llama_cpp.llama_sampler_init_temp(temp))
        add(llama_cpp.llama_sampler_init_dist(seed))
    return chain
