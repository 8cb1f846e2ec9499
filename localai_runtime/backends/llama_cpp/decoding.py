"""The token loop of one llama-cpp generation: sample, detokenize, stop.

:func:`decode` drives ``Llama.generate`` (llama.cpp's sampler chain with the request's
settings and grammar) from a prompt whose head was evaluated by the instance's chunked prefill,
decodes token bytes incrementally (a multi-byte character split across tokens never arrives
broken), holds back text that may begin a stop string, counts tokens and polls ``should_stop``
after every token. It yields ``(text, logprobs)`` and returns what ended it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llama_cpp
from llama_cpp import LogitsProcessorList

from localai_runtime.backends._text import TextStream
from localai_runtime.backends.abstract import Piece

if TYPE_CHECKING:
    from localai_runtime.backends.llama_cpp.instance import LlamaCppInstance


@dataclass(frozen=True)
class Decoded:
    finish: str | None
    """``stop`` (end of generation or a stop string), ``length``, or None: told to stop."""
    tokens: int
    stopped_by: str | None = None
    """The stop string that ended it."""
    tail: str = ""
    """Text held back at the end (no stop string followed)."""
    content: str = ""
    """All text yielded before the tail."""


def decode(
    instance: LlamaCppInstance,
    prompt: list[int],
    sampling: Mapping[str, Any],
    *,
    max_tokens: int | None,
    stop: Sequence[str],
    top_logprobs: int | None,
    should_stop: Callable[[], bool],
) -> Generator[tuple[str, list[dict[str, Any]] | None], None, Decoded]:
    llama = instance._generator
    if not instance._prefill(prompt, should_stop):
        return Decoded(None, 0)
    limit = instance._n_ctx - len(prompt)
    budget = limit if max_tokens is None else min(max_tokens, limit)
    text = TextStream(stop)
    logprobs: list[dict[str, Any]] = []
    count, finish, content = 0, "length", ""
    sampling = dict(sampling)
    grammar = sampling.pop("grammar", None)
    grammar = grammar.start() if grammar is not None else None
    if grammar is not None:  # after the logit bias, so banned tokens are never candidates
        sampling["logits_processor"] = LogitsProcessorList([*(sampling.get("logits_processor") or ()), grammar])
    tokens = llama.generate(prompt, **sampling)
    try:
        for token in tokens if budget > 0 else ():
            if llama_cpp.llama_vocab_is_eog(instance.vocab, token):
                finish = "stop"
                break
            if grammar is not None:
                grammar.accept(token)
            count += 1
            if top_logprobs is not None:
                logprobs.append(instance._logprob(token, top_logprobs))
            if out := text.feed(instance._piece(token)):
                content += out
                yield out, logprobs or None
                logprobs = []
            if text.stopped:
                finish = "stop"
                break
            if count >= budget:
                break
            if should_stop():
                return Decoded(None, count, content=content)
    finally:
        tokens.close()
        if grammar is not None:
            grammar.close()
    tail = text.finish()
    if logprobs:
        yield tail, logprobs
        tail = ""
    return Decoded(finish, count, text.stopped_by, tail, content)


def as_pieces(
    decoding: Generator[tuple[str, Any], None, Decoded], index: int
) -> Generator[Piece, None, Decoded]:
    """The decoded text as pieces of choice ``index``; returns what ended the decoding."""
    while True:
        try:
            text, logprobs = next(decoding)
        except StopIteration as done:
            return done.value
        yield Piece(text, index, logprobs=logprobs)
