"""The reader's loop of one llama-cpp generation: submit, detokenize, stop.

:func:`decode` hands the prompt and a sampler to the model's batching engine (which evaluates
the prompt in chunks beside the other requests, samples, and ends at the end of generation, the
token budget, or when told to stop), decodes token bytes incrementally (a multi-byte character
split across tokens never arrives broken), holds back text that may begin a stop string, and
leaves the engine once one is written. It yields ``(text, logprobs)`` and returns what ended it.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

from localai_runtime.backends._text import TextStream
from localai_runtime.backends.abstract import Piece, ShouldStop
from localai_runtime.backends.llama_cpp.engine.params import SamplingParams
from localai_runtime.backends.llama_cpp.engine.scheduler import Engine
from localai_runtime.backends.llama_cpp.engine.slot_sampling import SlotSampler
from localai_runtime.errors import InvalidRequestError


class Codec(Protocol):
    """What a generation needs of the model's vocabulary."""

    def piece(self, token: int) -> bytes:
        """The bytes a token writes (a piece of a UTF-8 character, maybe)."""

    def logprob_entry(self, token: int, logprob: float) -> dict[str, Any]:
        """A token and its logprob as OpenAI's logprob entry."""

    def tokenize_more(self, text: str) -> list[int]:
        """Tokens of ``text`` that continue a prompt."""


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
    codec: Codec, engine: Engine, context_size: int, prompt: list[int], params: SamplingParams,
    should_stop: ShouldStop,
) -> Generator[tuple[str, list[dict[str, Any]] | None], None, Decoded]:
    """Generate after ``prompt`` in ``engine`` with ``params`` (its ``max_tokens`` and ``stop``
    included); yields ``(text, logprobs)`` and returns what ended the decoding."""
    if not prompt:
        raise InvalidRequestError("the prompt has no tokens", param="prompt")
    limit = context_size - len(prompt)
    budget = limit if params.max_tokens is None else min(params.max_tokens, limit)
    if budget <= 0:
        return Decoded("length", 0)
    sampler = SlotSampler(engine.n_vocab, params, codec.logprob_entry)
    sampler.accept_prompt(prompt)
    job = engine.submit(prompt, sampler, budget, should_stop)
    text = TextStream(params.stop)
    logprobs: list[dict[str, Any]] = []
    count, content = 0, ""
    try:
        for token, logprob in job.tokens():
            count += 1
            if logprob is not None:
                logprobs.append(logprob)
            if out := text.feed(codec.piece(token)):
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
