"""Serving chat completions, completions and embeddings: registry, policy, pool, backend, response.

Handlers call :func:`serve`; everything between the validated request body and the OpenAI
response body (or its server-sent events) happens here, the same way for every backend.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

from localai_runtime.backends import Piece
from localai_runtime.errors import (
    APIError,
    InvalidRequestError,
    internal_error,
    stream_error_event,
)
from localai_runtime.serving.generation import collect_pieces, run_pieces, start_work, until_disconnected
from localai_runtime.serving.policy import Prepared, prepare
from localai_runtime.serving.runtime import Runtime

logger = logging.getLogger(__name__)

CHAT = "createChatCompletion"
COMPLETION = "createCompletion"
EMBEDDING = "createEmbedding"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Chat's logprobs object from the backend's per-token entries (token, logprob, bytes, top_logprobs)."""
    return None if entries is None else {"content": entries, "refusal": None}


def completion_logprobs(entries: list[dict[str, Any]] | None, offset: int = 0) -> dict[str, Any] | None:
    """The legacy completions logprobs object from the same per-token entries."""
    if entries is None:
        return None
    offsets, position = [], offset
    for entry in entries:
        offsets.append(position)
        position += len(entry["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []} for e in entries],
        "text_offset": offsets,
    }


class _Choices:
    """Accumulates pieces per choice index.

    Choices ``i * n`` are the first of each prompt (a completion may have several prompts,
    each with ``n`` choices): their prompt tokens add up to the request's.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.text: dict[int, str] = {}
        self.finish: dict[int, str] = {}
        self.logprobs: dict[int, list[dict[str, Any]]] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, piece: Piece) -> None:
        self.text[piece.index] = self.text.get(piece.index, "") + piece.text
        if piece.logprobs is not None:
            self.logprobs.setdefault(piece.index, []).extend(piece.logprobs)
        if piece.finish_reason is not None:
            self.finish[piece.index] = piece.finish_reason
            if piece.index % self.n == 0:
                self.prompt_tokens += piece.prompt_tokens
            self.completion_tokens += piece.completion_tokens

    def indices(self) -> list[int]:
        return sorted(self.text)


def _method(instance: Any, operation_id: str) -> Callable[..., Any]:
    return instance.chat if operation_id == CHAT else instance.complete


async def serve(runtime: Runtime, operation_id: str, body: Mapping[str, Any], receive: Callable[[], Any]) -> Response:
    registration = runtime.registrations.lookup(operation_id, body.get("model"))
    prepared = prepare(operation_id, body, registration, runtime.schemas)
    if operation_id == EMBEDDING:
        return await _embed(runtime, prepared)
    if prepared.request.get("stream"):
        # Wait for the first output before answering: an error until then (model unavailable,
        # queue full, prompt too long) is a plain HTTP error; after it, an error event. A client
        # that goes away meanwhile (queued, or while its prompt is evaluated) cancels its work.
        stop = threading.Event()
        stream = _stream(runtime, operation_id, prepared, stop)
        first = await until_disconnected(anext(stream), receive, stop)
        return StreamingResponse(
            _prepend(first, stream),
            media_type="text/event-stream",
            headers={**prepared.headers(), "Cache-Control": "no-cache"},
        )
    return await _complete(runtime, operation_id, prepared, receive)


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for item in rest:
        yield item


def _envelope(operation_id: str, prepared: Prepared) -> dict[str, Any]:
    prefix, kind = ("chatcmpl", "chat.completion") if operation_id == CHAT else ("cmpl", "text_completion")
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": prepared.registration.model,
        "system_fingerprint": f"localai-{prepared.registration.settings.backend}",
    }


async def _complete(runtime: Runtime, operation_id: str, prepared: Prepared, receive: Callable[[], Any]) -> Response:
    request = prepared.request
    choices = _Choices(int(request.get("n") or 1))
    stop = threading.Event()

    async def generate() -> list[Piece]:
        async with runtime.pool(prepared.registration).acquire() as lease:
            return await collect_pieces(_method(lease.instance, operation_id), request, stop=stop,
                                        counter=runtime.generations, executor=runtime.executor, lease=lease)

    for piece in await until_disconnected(generate(), receive, stop):
        choices.add(piece)
    texts = {i: choices.text[i] for i in choices.indices()}
    if prepared.filters.active:
        texts = await asyncio.to_thread(lambda: {i: prepared.filters.apply(text) for i, text in texts.items()})
    body = _envelope(operation_id, prepared)
    if operation_id == CHAT:
        body["choices"] = [
            {"index": i, "message": {"role": "assistant", "content": texts[i], "refusal": None},
             "finish_reason": choices.finish.get(i, "stop"), "logprobs": chat_logprobs(choices.logprobs.get(i))}
            for i in choices.indices()
        ]
    else:
        body["choices"] = [
            {"index": i, "text": texts[i], "finish_reason": choices.finish.get(i, "stop"),
             "logprobs": completion_logprobs(choices.logprobs.get(i))}
            for i in choices.indices()
        ]
    body["usage"] = _usage(choices.prompt_tokens, choices.completion_tokens)
    return JSONResponse(body, headers=prepared.headers())


def _sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


async def _stream(
    runtime: Runtime, operation_id: str, prepared: Prepared, stop: threading.Event
) -> AsyncIterator[bytes]:
    request = prepared.request
    filters = prepared.filters
    envelope = _envelope(operation_id, prepared)
    envelope["object"] = "chat.completion.chunk" if operation_id == CHAT else "text_completion"
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    n = int(request.get("n") or 1)
    choices = _Choices(n)
    sent: dict[int, int] = {}  # characters of each choice's text sent so far (text_offset starts there)

    def chunk(index: int, text: str | None, finish: str | None, *, role: bool = False, logprobs=None) -> bytes:
        if operation_id == CHAT:
            delta: dict[str, Any] = {"content": text} if text else {}
            if role:
                delta = {"role": "assistant", "content": ""}
            choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}
        else:
            choice = {"index": index, "text": text or "", "finish_reason": finish,
                      "logprobs": completion_logprobs(logprobs, sent.get(index, 0))}
            sent[index] = sent.get(index, 0) + len(text or "")
        return _sse({**envelope, "choices": [choice]})

    started = False
    try:
        async with runtime.pool(prepared.registration).acquire() as lease:
            pieces = run_pieces(_method(lease.instance, operation_id), request, stop=stop,
                                counter=runtime.generations, executor=runtime.executor, lease=lease)
            async for piece in pieces:
                if not started:
                    started = True
                    if operation_id == CHAT:
                        for index in range(n):
                            yield chunk(index, None, None, role=True)
                choices.add(piece)
                if not filters.active and (piece.text or piece.logprobs):
                    yield chunk(piece.index, piece.text, None, logprobs=piece.logprobs)
                if piece.finish_reason is not None:
                    if filters.active:  # cut/trim need the whole text: it arrives in one piece
                        text = await asyncio.to_thread(filters.apply, choices.text[piece.index])
                        yield chunk(piece.index, text, None, logprobs=choices.logprobs.get(piece.index))
                    yield chunk(piece.index, None, piece.finish_reason)
        started = True
        if include_usage:
            yield _sse({**envelope, "choices": [], "usage": _usage(choices.prompt_tokens, choices.completion_tokens)})
    except Exception as exc:  # noqa: BLE001 - after the stream started, errors become an event
        if not started:
            raise
        yield stream_error_event(exc if isinstance(exc, APIError) else internal_error(exc))
    yield b"data: [DONE]\n\n"


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


async def _embed(runtime: Runtime, prepared: Prepared) -> Response:
    request = prepared.request
    inputs = request["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not inputs:
        raise InvalidRequestError("'input' must not be empty", param="input")
    async with runtime.pool(prepared.registration).acquire() as lease:
        vectors, tokens = await start_work(
            asyncio.get_running_loop(), runtime.executor, functools.partial(lease.instance.embed, list(inputs)),
            None, lease,
        )
    encoding = request.get("encoding_format") or "float"
    data = [
        {"object": "embedding", "index": index, "embedding": _encode(list(vector), encoding)}
        for index, vector in enumerate(vectors)
    ]
    body = {"object": "list", "data": data, "model": prepared.registration.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return JSONResponse(body, headers=prepared.headers())
