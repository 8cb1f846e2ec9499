"""A request's sampling values, read once into a :class:`SamplingParams`: temperature and
friends, the grammar (GBNF, or one made from a JSON ``response_format``), the logit bias, the
token budget, stop strings and logprobs. A value the request leaves out (or gives as null)
keeps the default :class:`SamplingParams` declares."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF

from localai_runtime.backends._text import request_value
from localai_runtime.backends.llama_cpp.engine.grammar import LazyGrammar
from localai_runtime.backends.llama_cpp.engine.params import Bias, SamplingParams
from localai_runtime.backends.llama_cpp.json_grammar import schema_to_gbnf
from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.gbnf_limits import check_gbnf
from localai_runtime.tools.grammar_checks import GRAMMAR_PARAM
from localai_runtime.tools.grammar_limits import GrammarLimits
from localai_runtime.tools.response_format import JSON_OBJECT, JSON_SCHEMA, ResponseFormat

_BANNED = -1e30  # a finite "never": a grammar may still force the token when nothing else is allowed
_REQUEST = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "n")
"""Request fields that are :class:`SamplingParams` fields of the same name."""
_EXTENSIONS = ("top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat", "mirostat_tau",
               "mirostat_eta")
"""``x-localai-extensions`` keys that are :class:`SamplingParams` fields of the same name."""
COMPLETION_MAX_TOKENS = 16
"""The completions API's default ``max_tokens`` (chat's default is the rest of the context)."""


class Vocabulary(Protocol):
    vocab: Any
    """llama.cpp's vocabulary pointer."""
    n_vocab: int

    @property
    def default_seed(self) -> int | None: ...

    @property
    def context_size(self) -> int: ...

    @property
    def end_of_generation(self) -> list[int]: ...

    @property
    def grammar_limits(self) -> GrammarLimits: ...


def compile_grammar(vocab: Any, text: str, param: str, limits: GrammarLimits) -> LazyGrammar:
    """``text`` as a grammar; a 400 naming ``param`` when it is over ``limits`` (checked before
    llama.cpp sees it) or when llama.cpp cannot parse it."""
    check_gbnf(text, param, limits)
    return LazyGrammar(vocab, text, param, limits.max_step_seconds)


def read_params(vocabulary: Vocabulary, request: Mapping[str, Any], response_format: ResponseFormat, *,
                chat: bool) -> SamplingParams:
    """The request's sampling values (a chat completion's, else a completion's: they name the
    budget and logprobs differently); every error is a 400 now."""
    ext = request.get("x-localai-extensions") or {}
    given = {key: request[key] for key in _REQUEST if request.get(key) is not None}
    given |= {key: ext[key] for key in _EXTENSIONS if ext.get(key) is not None}
    if given.get("seed") is None and vocabulary.default_seed is not None:
        given["seed"] = vocabulary.default_seed
    if given.get("repeat_last_n", 0) < 0:  # -1: the whole context
        given["repeat_last_n"] = vocabulary.context_size
    stop = request_value(request, "stop", [])
    if chat:
        max_tokens = request_value(request, "max_completion_tokens", request_value(request, "max_tokens"))
        top = request_value(request, "top_logprobs", 0) if request_value(request, "logprobs", False) else None
    else:
        max_tokens = request_value(request, "max_tokens", COMPLETION_MAX_TOKENS)
        top = request_value(request, "logprobs")
    bias = _bias(vocabulary, request, ext)
    grammar = _answer_grammar(vocabulary, response_format, ext)
    return SamplingParams(**given, bias=bias, top_logprobs=top, grammar=grammar,
                          max_tokens=max_tokens, stop=(stop,) if isinstance(stop, str) else tuple(stop))


def _answer_grammar(vocabulary: Vocabulary, response_format: ResponseFormat,
                    ext: Mapping[str, Any]) -> LazyGrammar | None:
    """The grammar the answer must follow: the request's GBNF (measured against the limits when
    the request was prepared, before it waited: ``serving.policy.check_grammars``), or one made
    from a JSON response format (its schema measured then too; the GBNF made of it is measured
    here, as llama.cpp will read it)."""
    limits = vocabulary.grammar_limits
    text, param = _answer_gbnf(response_format, ext)
    if text is None:
        return None
    if param == GRAMMAR_PARAM:
        return LazyGrammar(vocabulary.vocab, text, param, limits.max_step_seconds)
    return compile_grammar(vocabulary.vocab, text, param, limits)


def _answer_gbnf(response_format: ResponseFormat, ext: Mapping[str, Any]) -> tuple[str | None, str]:
    """The GBNF the answer must follow (a grammar, or a JSON response format), and its field."""
    if "grammar" in ext and response_format.constrained:
        raise InvalidRequestError(f"give either a grammar or a JSON {response_format.param}, not both",
                                  param=response_format.param)
    if "grammar" in ext:
        return ext["grammar"], GRAMMAR_PARAM
    if response_format.type == JSON_OBJECT:
        return JSON_GBNF, response_format.param
    if response_format.type == JSON_SCHEMA:
        schema = {} if response_format.schema is None else response_format.schema
        try:
            return schema_to_gbnf(json.dumps(schema)), response_format.param
        except Exception as exc:  # the converter raises assorted errors for unsupported schemas
            raise InvalidRequestError(f"this JSON schema cannot be enforced: {exc}",
                                      param=response_format.schema_param) from exc
    return None, response_format.param


def _bias(vocabulary: Vocabulary, request: Mapping[str, Any], ext: Mapping[str, Any]) -> Bias | None:
    """The logit bias as token ids and the values added to their logits (None: no bias)."""
    logit_bias = request_value(request, "logit_bias", {})
    if not logit_bias and not ext.get("ignore_eos"):
        return None
    bias: dict[int, float] = {}
    for key, value in logit_bias.items():
        token = int(key) if str(key).isdigit() else -1
        if not 0 <= token < vocabulary.n_vocab:
            raise InvalidRequestError(f"logit_bias: {key!r} is not a token id of this model", param="logit_bias")
        bias[token] = float(value)
    if ext.get("ignore_eos"):
        bias.update(dict.fromkeys(vocabulary.end_of_generation, _BANNED))
    ids = np.fromiter(bias, dtype=np.intp, count=len(bias))
    return ids, np.fromiter(bias.values(), dtype=np.float32, count=len(bias))
