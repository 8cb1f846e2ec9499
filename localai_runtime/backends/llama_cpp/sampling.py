"""A request's sampler settings for the batching engine: temperature and friends, the grammar
(GBNF, or one made from a JSON ``response_format``) and the logit bias."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF

from localai_runtime.backends._text import request_value
from localai_runtime.backends.llama_cpp.json_grammar import schema_to_gbnf
from localai_runtime.errors import InvalidRequestError

if TYPE_CHECKING:
    from localai_runtime.backends.llama_cpp.tool_calls import CallPlan

_BANNED = -1e30  # a finite "never": a grammar may still force the token when nothing else is allowed


class Vocabulary(Protocol):
    vocab: Any
    """llama.cpp's vocabulary pointer."""
    n_vocab: int
    default_seed: int | None

    @property
    def end_of_generation(self) -> list[int]: ...


def compile_grammar(vocab: Any, text: str, param: str) -> LazyGrammar:
    """``text`` as a grammar; a 400 naming ``param`` when llama.cpp cannot parse it."""
    return LazyGrammar(vocab, text, param)


_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)
CANDIDATES = 64
"""Tokens tried against the grammar first, the most likely ones; the whole vocabulary is
checked only when none of them fits."""


class LazyGrammar:
    """A GBNF grammar applied as llama.cpp's own server applies it: to the most likely tokens
    first, and to the whole vocabulary only when none of them fits. Checking every token of a
    large vocabulary (262,144 for Gemma 3) against the grammar costs more than a forward pass of
    a small model; a few dozen cost nothing. Sampling then chooses among the allowed tokens of
    the :data:`CANDIDATES` most likely ones (as top_k would), or among all allowed tokens."""

    def __init__(self, vocab: Any, text: str, param: str) -> None:
        self._vocab, self._text = vocab, text.encode("utf-8")
        self.param = param
        """The request field the grammar comes from (errors name it)."""
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, self._text, b"root")
        if not sampler:  # llama.cpp would crash on a NULL sampler later
            raise InvalidRequestError("the grammar is not valid GBNF with a 'root' rule", param=param)
        llama_cpp.llama_sampler_free(sampler)
        self._sampler: Any = None

    def start(self) -> LazyGrammar:
        """A fresh copy in the grammar's start state, for one generation (:meth:`close` it)."""
        started = object.__new__(LazyGrammar)
        started._vocab, started._text, started.param = self._vocab, self._text, self.param
        started._sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, self._text, b"root")
        return started

    def close(self) -> None:
        if self._sampler:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None

    def accept(self, token: int) -> None:
        llama_cpp.llama_sampler_accept(self._sampler, token)

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
        count = min(CANDIDATES, scores.size)
        top = np.argpartition(scores, scores.size - count)[scores.size - count:]
        allowed = self._allowed(top, scores[top])
        if allowed.size == 0:
            allowed = self._allowed(np.arange(scores.size, dtype=np.intc), scores)
        return allowed


class SamplingOptions:
    """A request's sampling settings (``sampling``: the sampler chain's, and the grammar), its
    logit bias, and what the token loop needs."""

    def __init__(self, instance: Vocabulary, request: Mapping[str, Any], max_tokens: int | None,
                 top_logprobs: int | None) -> None:
        ext = request.get("x-localai-extensions") or {}
        stop = request_value(request, "stop", [])
        self.stop = [stop] if isinstance(stop, str) else list(stop)
        self.max_tokens = max_tokens
        self.top_logprobs = top_logprobs
        self.seed = request_value(request, "seed", instance.default_seed)
        self.choice_seed = llama_cpp.LLAMA_DEFAULT_SEED if self.seed is None else self.seed
        """The seed of the choice being generated (the instance sets it per choice)."""
        self.repeat_last_n = ext.get("repeat_last_n", 64)
        self.sampling: dict[str, Any] = {
            "temp": request_value(request, "temperature", 1.0),
            "top_p": request_value(request, "top_p", 1.0),
            "top_k": ext.get("top_k", 0),
            "min_p": ext.get("min_p", 0.0),
            "typical_p": ext.get("typical_p", 1.0),
            "repeat_penalty": ext.get("repeat_penalty", 1.0),
            "presence_penalty": request_value(request, "presence_penalty", 0.0),
            "frequency_penalty": request_value(request, "frequency_penalty", 0.0),
            "mirostat_mode": ext.get("mirostat", 0),
            "mirostat_tau": ext.get("mirostat_tau", 5.0),
            "mirostat_eta": ext.get("mirostat_eta", 0.1),
            "grammar": None,
        }
        self.bias = self._bias(instance, request, ext)
        self.answer_gbnf, param = self._answer_gbnf(request, ext)
        if self.answer_gbnf is not None:
            self.sampling["grammar"] = compile_grammar(instance.vocab, self.answer_gbnf, param)
        self.calls: CallPlan | None = None
        """Set by the instance when the request may call tools."""

    @staticmethod
    def _answer_gbnf(request: Mapping[str, Any], ext: Mapping[str, Any]) -> tuple[str | None, str]:
        """The GBNF the answer must follow (a grammar, or a JSON response_format), and its field."""
        response_format = request_value(request, "response_format", {"type": "text"})
        kind = response_format.get("type")
        if "grammar" in ext and kind != "text":
            raise InvalidRequestError("give either a grammar or a JSON response_format, not both",
                                      param="response_format")
        if "grammar" in ext:
            return ext["grammar"], "x-localai-extensions.grammar"
        if kind == "json_object":
            return JSON_GBNF, "response_format"
        if kind == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema", {})
            try:
                return schema_to_gbnf(json.dumps(schema)), "response_format"
            except Exception as exc:  # the converter raises assorted errors for unsupported schemas
                raise InvalidRequestError(f"this JSON schema cannot be enforced: {exc}",
                                          param="response_format.json_schema.schema") from exc
        return None, "response_format"

    @staticmethod
    def _bias(
        instance: Vocabulary, request: Mapping[str, Any], ext: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The logit bias as token ids and the values added to their logits (None: no bias)."""
        logit_bias = request_value(request, "logit_bias", {})
        if not logit_bias and not ext.get("ignore_eos"):
            return None
        bias: dict[int, float] = {}
        for key, value in logit_bias.items():
            token = int(key) if str(key).isdigit() else -1
            if not 0 <= token < instance.n_vocab:
                raise InvalidRequestError(f"logit_bias: {key!r} is not a token id of this model", param="logit_bias")
            bias[token] = float(value)
        if ext.get("ignore_eos"):
            bias.update(dict.fromkeys(instance.end_of_generation, _BANNED))
        ids = np.fromiter(bias, dtype=np.intp, count=len(bias))
        return ids, np.fromiter(bias.values(), dtype=np.float32, count=len(bias))
