"""The reader's loop of one llama-cpp generation: submit, detokenize, stop.

:func:`decode` hands the prompt and a sampler to the model's batching engine (which evaluates
the prompt in chunks beside the other requests, samples, and ends at the end of generation, the
token budget, or when told to stop), decodes token bytes incrementally (a multi-byte character
split across tokens never arrives broken), holds back text that may begin a stop string, and
leaves the engine once one is written. It yields ``(text, logprobs)`` and returns what ended it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localai_runtime.backends._text import TextStream
from localai_runtime.backends.abstract import Piece
from localai_runtime.backends.llama_cpp.engine.slot_sampling import SlotSampler
from localai_runtime.errors import InvalidRequestError

if TYPE_CHECKING:
    from localai_runtime.backends.llama_cpp.instance import LlamaCppInstance
    from localai_runtime.backends.llama_cpp.sampling import SamplingOptions


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
    cached: int = 0
    """Prompt tokens found in the engine's cache."""


def decode(
    instance: LlamaCppInstance,
    prompt: list[int],
    options: SamplingOptions,
    sampling: Mapping[str, Any],
    *,
    max_tokens: int | None,
    stop: Sequence[str],
    should_stop: Callable[[], bool],
) -> Generator[tuple[str, list[dict[str, Any]] | None], None, Decoded]:
    if not prompt:
        raise InvalidRequestError("the prompt has no tokens", param="prompt")
    limit = instance.context_size - len(prompt)
    budget = limit if max_tokens is None else min(max_tokens, limit)
    if budget <= 0:
        return Decoded("length", 0)
    engine = instance.engine  # raises for an embeddings-only instance, before a sampler exists
    last_n = options.repeat_last_n if options.repeat_last_n >= 0 else instance.context_size
    sampler = SlotSampler(instance.n_vocab, sampling, seed=options.choice_seed, repeat_last_n=last_n,
                          bias=options.bias, top_logprobs=options.top_logprobs, entry=instance._token_entry)
    sampler.accept_prompt(prompt)
    job = engine.submit(prompt, sampler, budget, should_stop)
    text = TextStream(stop)
    logprobs: list[dict[str, Any]] = []
    count, content = 0, ""
    try:
        for token, logprob in job.tokens():
            count += 1
            if logprob is not None:
                logprobs.append(logprob)
            if out := text.feed(instance._piece(token)):
                content += out
                yield out, logprobs or None
                logprobs = []
            if text.stopped:
                break
    finally:
        job.leave()
    finish = "stop" if text.stopped else job.finish
    if finish is None:
        return Decoded(None, count, content=content, cached=job.cached)
    tail = text.finish()
    if logprobs:
        yield tail, logprobs
        tail = ""
    return Decoded(finish, count, text.stopped_by, tail, content, job.cached)


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
