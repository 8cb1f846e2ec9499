"""The one streaming pipeline (serving/streaming.py): the first event awaited before the response
starts, an error before it raised as is, an error after it the API's last events, counted."""

from __future__ import annotations

import asyncio
import threading

import pytest

from localai_runtime.errors import APIError, InvalidRequestError
from localai_runtime.serving import streaming


class _Runtime:
    def __init__(self) -> None:
        self.errors: list[APIError] = []

    def count_error(self, error: APIError) -> None:
        self.errors.append(error)


async def _never_leaves() -> dict:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


async def _body(response) -> bytes:
    return b"".join([chunk async for chunk in response.body_iterator])


def _respond(runtime, events, **hooks):
    return streaming.respond(runtime, events, _never_leaves, threading.Event(),
                             lambda: {"x-test": "1"}, **hooks)


def test_an_error_after_the_first_event_ends_the_stream_with_an_error_event():
    runtime = _Runtime()

    async def events():
        yield b"data: 1\n\n"
        raise InvalidRequestError("late", param="p")

    async def run() -> tuple:
        response = await _respond(runtime, events())
        return response, await _body(response)

    response, body = asyncio.run(run())
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-test"] == "1"
    assert "x-accel-buffering" not in response.headers
    assert body.startswith(b"data: 1\n\ndata: {") and b'"late"' in body and body.endswith(streaming.DONE)
    assert [error.message for error in runtime.errors] == ["late"]


def test_an_api_says_what_its_late_error_and_its_end_look_like():
    runtime = _Runtime()

    async def events():
        yield b"a"
        raise RuntimeError("boom")

    async def failed(error: APIError) -> bytes:
        return f"failed:{error.message}".encode()

    async def run() -> tuple:
        response = await _respond(runtime, events(), failed=failed, done=b"", unbuffered=True)
        return response, await _body(response)

    response, body = asyncio.run(run())
    assert body == b"afailed:The server had an error while processing your request."
    assert response.headers["x-accel-buffering"] == "no" and len(runtime.errors) == 1


def test_an_error_before_the_first_event_is_raised():
    runtime = _Runtime()

    async def events():
        raise InvalidRequestError("early")
        yield b""  # pragma: no cover - a generator

    with pytest.raises(InvalidRequestError):
        asyncio.run(_respond(runtime, events()))
    assert runtime.errors == []
