"""A GBNF grammar as the engine applies it: to the most likely tokens first.

Checking every token of a large vocabulary against a grammar can cost more than a forward pass
of a small model; a few dozen tokens cost nothing. So, as llama.cpp's own server
does, the grammar is tried on the :data:`CANDIDATES` most likely tokens, and on the whole
vocabulary only when none of them fits.

An ambiguous grammar can double llama.cpp's work (and memory) with every token it accepts; a
step over :attr:`LazyGrammar.step_seconds` ends the generation with a 400 naming the grammar's
field, so one request cannot hold the engine thread.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

import llama_cpp
import numpy as np

from localai_runtime.errors import InvalidRequestError

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
CANDIDATES = 64
"""Tokens tried against the grammar first, the most likely ones; the whole vocabulary is
checked only when none of them fits."""


class GrammarTooCostly(InvalidRequestError):
    """One token's grammar work took longer than the grammar's limit: the request's mistake, a 400
    (``invalid_value``) naming the grammar's field and ``grammar_limits.max_step_seconds``. Raised
    on the engine thread while sampling, where the scheduler ends only this request with it (its
    slot and grammar freed); the request's reader raises it, before its answer began or as its
    stream's error event (Responses: ``response.failed``, stored so)."""


class LazyGrammar:
    """A compiled grammar; :meth:`start` gives one generation its own state. Sampling then
    chooses among the allowed tokens of the most likely ones (as top_k would), or among all
    allowed tokens."""

    def __init__(self, vocab: Any, text: str, param: str, step_seconds: float = 1.0) -> None:
        self.text = text
        """The GBNF source (a call grammar may offer it as an alternative)."""
        self._vocab, self._text = vocab, text.encode("utf-8")
        self.param = param
        """The request field the grammar comes from (errors name it)."""
        self.step_seconds = step_seconds
        """The most one token's checking or advancing may take."""
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, self._text, b"root")
        if not sampler:  # llama.cpp would crash on a NULL sampler later
            raise InvalidRequestError("the grammar is not valid GBNF with a 'root' rule", param=param)
        llama_cpp.llama_sampler_free(sampler)
        self._sampler: Any = None

    def start(self) -> LazyGrammar:
        """A fresh copy in the grammar's start state, for one generation (:meth:`close` it)."""
        started = object.__new__(LazyGrammar)
        started.text, started._vocab, started._text, started.param = self.text, self._vocab, self._text, self.param
        started.step_seconds = self.step_seconds
        started._sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, self._text, b"root")
        return started

    def close(self) -> None:
        if self._sampler:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    def accept(self, token: int) -> None:
        begun = time.perf_counter()
        llama_cpp.llama_sampler_accept(self._sampler, token)
        self._timed(begun)

    def _timed(self, begun: float) -> None:
        took = time.perf_counter() - begun
        if took > self.step_seconds:
            raise GrammarTooCostly(f"the grammar took {took:.2f} s over one token, more than the {self.step_seconds} s "
                                   "this model allows (grammar_limits.max_step_seconds): it is too ambiguous to follow",
                                   param=self.param)

    def _allowed(self, ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"], data["logit"] = ids, logits
        candidates = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), size=len(ids), selected=-1,
            sorted=False)
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(candidates))
        return data["id"][np.isfinite(data["logit"])]

    def allowed(self, scores: np.ndarray) -> np.ndarray:
        """The ids the grammar allows next: among the :data:`CANDIDATES` most likely tokens, or
        (when none of those fits) in the whole vocabulary; empty when it allows none."""
        begun = time.perf_counter()
        count = min(CANDIDATES, scores.size)
        top = np.argpartition(scores, scores.size - count)[scores.size - count:]
        allowed = self._allowed(top, scores[top])
        if allowed.size == 0:
            allowed = self._allowed(np.arange(scores.size, dtype=np.intc), scores)
        self._timed(begun)
        return allowed
