"""Generated text, answered whole or streamed as server-sent events, for any API of text.

:class:`TextServing` runs one generation request on a leased instance and shapes its pieces
with its subclass's hooks (chat completions, legacy completions: ``chat`` and ``completions``),
so nothing here branches on the operation. Until the first piece, errors (model unavailable,
queue full, prompt too long) are plain HTTP errors and a client that leaves cancels the work;
after it, an error arrives as an event before ``[DONE]`` (:mod:`.streaming`).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from starlette.responses import JSONResponse, Response

from localai_runtime.backends import ModelInstance, Piece, Pieces
from localai_runtime.serving import streaming
from localai_runtime.serving.base import Serving
from localai_runtime.serving.generation import collect_pieces, run_pieces, until_disconnected
from localai_runtime.serving.policy import Prepared, check_grammars
from localai_runtime.serving.runtime import Runtime
from localai_runtime.serving.streaming import sse


class TextServing(Serving):
    """An API of generated text: the hooks say how it calls the instance and shapes the text."""

    id_prefix: ClassVar[str]
    object: ClassVar[str]
    chunk_object: ClassVar[str]

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        await check_grammars(prepared)  # before any wait: an over-limit grammar is a 400 at once
        stop = threading.Event()
        if prepared.request.get("stream"):
            return await streaming.respond(runtime, _stream(runtime, self, prepared, stop), receive, stop,
                                           prepared.headers)
        return await _whole(runtime, self, prepared, receive, stop)

    def generator(self, instance: ModelInstance,
                  prepared: Prepared) -> Callable[[Mapping[str, Any], Callable[[], bool]], Pieces]:
        """The instance's generator for this API, given what ``prepared`` parsed for it."""
        raise NotImplementedError

    def choice(self, index: int, text: str, finish: str, logprobs: list[dict[str, Any]] | None,
               calls: list[Call], legacy: bool) -> dict[str, Any]:
        raise NotImplementedError

    def chunk_choice(self, index: int, text: str | None, finish: str | None,
                     logprobs: list[dict[str, Any]] | None, offset: int,
                     calls: list[Call], legacy: bool) -> dict[str, Any]:
        """A stream chunk's choice; ``offset``: characters of this choice already sent; ``calls``:
        new output of tool calls (a call's id and name once, then argument text)."""
        raise NotImplementedError

    def opening_choices(self, n: int) -> list[dict[str, Any]]:
        """Choices of the chunks sent before the first text (chat announces the role)."""
        return []


@dataclass
class Call:
    """A tool call of one choice, or (in a stream) new output of it."""

    index: int
    id: str
    name: str | None
    arguments: str


def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


class Choices:
    """Accumulates pieces per choice index.

    Choices ``i * n`` are the first of each prompt (a completion may have several prompts,
    each with ``n`` choices): their prompt tokens add up to the request's.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls: dict[int, list[Call]] = {}
        self.text: dict[int, str] = {}
        self.finish: dict[int, str] = {}
        self.logprobs: dict[int, list[dict[str, Any]]] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0

    def add(self, piece: Piece) -> list[Call]:
        """Adds a piece; returns its new tool-call output (ids given as calls begin)."""
        self.text[piece.index] = self.text.get(piece.index, "") + piece.text
        new = []
        calls = self.calls.setdefault(piece.index, [])
        for delta in piece.tool_calls or ():
            if delta.name is not None:
                calls.append(Call(delta.index, f"call_{uuid.uuid4().hex[:24]}", delta.name, ""))
                new.append(calls[-1])
            if delta.arguments:
                calls[delta.index].arguments += delta.arguments
                new.append(Call(delta.index, calls[delta.index].id, None, delta.arguments))
        if piece.logprobs is not None:
            self.logprobs.setdefault(piece.index, []).extend(piece.logprobs)
        if piece.finish_reason is not None:
            self.finish[piece.index] = piece.finish_reason
            if piece.index % self.n == 0:
                self.prompt_tokens += piece.prompt_tokens
                self.cached_tokens += piece.cached_tokens
            self.completion_tokens += piece.completion_tokens
        return new

    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)

    def indices(self) -> list[int]:
        return sorted(self.text)


def _envelope(api: TextServing, prepared: Prepared, kind: str) -> dict[str, Any]:
    return {
        "id": f"{api.id_prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": prepared.registration.model,
        "system_fingerprint": f"localai-{prepared.registration.settings.backend}",
    }


async def _whole(
    runtime: Runtime, api: TextServing, prepared: Prepared, receive: Callable[[], Any], stop: threading.Event
) -> Response:
    request = prepared.request
    choices = Choices(int(request.get("n") or 1))
    observer = runtime.observe(prepared.registration.model)

    async def generate() -> list[Piece]:
        async with runtime.pool(prepared.registration).acquire() as lease:
            observer.admitted()
            return await collect_pieces(api.generator(lease.instance, prepared), request, stop=stop,
                                        counter=runtime.generations, executor=runtime.executor, lease=lease,
                                        observer=observer)

    for piece in await until_disconnected(generate(), receive, stop):
        choices.add(piece)
    observer.finished(choices.finish.get(0, "stop"), choices.prompt_tokens, choices.completion_tokens)
    texts = {i: choices.text[i] for i in choices.indices()}
    if prepared.filters.active:
        texts = await asyncio.to_thread(lambda: {i: prepared.filters.apply(text) for i, text in texts.items()})
    body = _envelope(api, prepared, api.object)
    legacy = prepared.tools.legacy
    body["choices"] = [api.choice(i, texts[i], choices.finish.get(i, "stop"), choices.logprobs.get(i),
                                   choices.calls.get(i, []), legacy) for i in choices.indices()]
    body["usage"] = choices.usage()
    return JSONResponse(body, headers=prepared.headers())


async def _stream(
    runtime: Runtime, api: TextServing, prepared: Prepared, stop: threading.Event
) -> AsyncGenerator[bytes, None]:
    request = prepared.request
    filters = prepared.filters
    envelope = _envelope(api, prepared, api.chunk_object)
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    choices = Choices(int(request.get("n") or 1))
    sent: dict[int, int] = {}  # characters of each choice's text sent so far (text_offset starts there)
    legacy = prepared.tools.legacy

    def chunk(index: int, text: str | None, finish: str | None, logprobs=None, calls=()) -> bytes:
        choice = api.chunk_choice(index, text, finish, logprobs, sent.get(index, 0), list(calls), legacy)
        sent[index] = sent.get(index, 0) + len(text or "")
        return sse({**envelope, "choices": [choice]})

    opened = False
    observer = runtime.observe(prepared.registration.model)
    async with runtime.pool(prepared.registration).acquire() as lease:
        observer.admitted()
        pieces = run_pieces(api.generator(lease.instance, prepared), request, stop=stop, counter=runtime.generations,
                            executor=runtime.executor, lease=lease, observer=observer)
        async for piece in pieces:
            if not opened:  # the stream has begun, even with nothing to send yet (filtered completions)
                opened = True
                yield b"".join(sse({**envelope, "choices": [choice]}) for choice in api.opening_choices(choices.n))
            calls = choices.add(piece)
            if not filters.active and (piece.text or piece.logprobs):
                yield chunk(piece.index, piece.text, None, piece.logprobs)
            if calls:
                yield chunk(piece.index, None, None, calls=calls)
            if piece.finish_reason is not None:
                if filters.active:  # cut/trim need the whole text: it arrives in one piece
                    text = await asyncio.to_thread(filters.apply, choices.text[piece.index])
                    yield chunk(piece.index, text, None, choices.logprobs.get(piece.index))
                yield chunk(piece.index, None, piece.finish_reason)
    observer.finished(choices.finish.get(0, "stop"), choices.prompt_tokens, choices.completion_tokens)
    if include_usage:
        yield sse({**envelope, "choices": [], "usage": choices.usage()})
