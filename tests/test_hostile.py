"""Hostile input against a live server: every request answers a clean OpenAI error (or a sane
result), quickly, and the server goes on serving.

The server has the shipped ``demo`` registration (llama-cpp-python on the generated demo GGUF,
context 2048) for cases where the real backend matters, and echo registrations
(tests/fake_backend.py) for the rest. After every hostile request, :func:`still_serving`
checks ``/healthz`` and a small chat.
"""

from __future__ import annotations

import json
import select
import socket
import time

import httpx
import pytest

from localai_runtime.settings import DEFAULT_MAX_BODY_BYTES
from tests.conftest import demo_and_echo_server

CONTEXT_SIZE = 2048  # configs/demo-llama-cpp.yaml
MESSAGES = [{"role": "user", "content": "hi"}]
MB = 1 << 20

ECHO_CONFIGS = """
registration: {model: echo, operations: [createChatCompletion, createCompletion, createEmbedding]}
local_settings: {backend: echo}
---
registration: {model: lenient, operations: [createChatCompletion]}
local_settings: {backend: echo}
policy: {unsupported_parameters: drop, unknown_parameters: drop}
"""


@pytest.fixture(scope="module")
def hostile_server(built_spec, tmp_path_factory):
    with demo_and_echo_server(built_spec, tmp_path_factory.mktemp("hostile-configs"), ECHO_CONFIGS) as live:
        yield live


@pytest.fixture
def http(hostile_server):
    with hostile_server.http() as client:
        yield client
    still_serving(hostile_server)


def still_serving(server, model: str = "echo") -> None:
    with server.http() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        chat = http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, "max_tokens": 2})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["role"] == "assistant"


def error_of(response: httpx.Response, status: int) -> dict:
    """The OpenAI error of ``response``, which must have ``status`` and exactly the envelope's keys."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]


def post_raw(http: httpx.Client, path: str, content: bytes | str, content_type: str | None = "application/json"):
    headers = {} if content_type is None else {"content-type": content_type}
    return http.post(path, content=content.encode() if isinstance(content, str) else content, headers=headers)


CHAT_BODY = json.dumps({"model": "echo", "messages": MESSAGES})


# -- malformed JSON and bodies that are not a request -------------------------------------

@pytest.mark.parametrize("content", [
    '{"model": "echo", "messages": [',  # truncated
    '{"model": "echo",}',
    "{'model': 'echo'}",
    '{"a": 1} garbage',
    '{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    '{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": -Infinity}',
    '{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e400}',
])
def test_malformed_json_is_400_naming_the_problem(http, content):
    error = error_of(post_raw(http, "/v1/chat/completions", content), 400)
    assert error["message"].startswith("The request body is not valid JSON")


@pytest.mark.parametrize("content", ["null", "[]", '"chat"', "42", ""])
def test_a_body_that_is_not_an_object_is_400(http, content):
    error_of(post_raw(http, "/v1/chat/completions", content), 400)


def test_a_100_mb_body_with_content_length_is_413_before_it_is_sent(hostile_server):
    response, sent = _send_huge_body(hostile_server, chunked=False)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert sent < 20 * MB  # answered from the header, long before the body arrived
    assert b'"code": "request_too_large"' in response
    still_serving(hostile_server)


def test_a_100_mb_chunked_body_is_413_once_past_the_limit(hostile_server):
    response, sent = _send_huge_body(hostile_server, chunked=True)
    assert response.startswith(b"HTTP/1.1 413 ")
    assert DEFAULT_MAX_BODY_BYTES <= sent < DEFAULT_MAX_BODY_BYTES + 8 * MB  # not buffered to the end
    still_serving(hostile_server)


def _send_huge_body(server, *, chunked: bool, total: int = 100 * MB, timeout: float = 10) -> tuple[bytes, int]:
    """Stream a ``total``-byte body, stopping as soon as the server answers; returns the
    response's first bytes and how many body bytes were sent by then."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    piece = b"[" * (256 * 1024)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    deadline = time.monotonic() + timeout
    sent = 0
    with socket.create_connection(("127.0.0.1", server.settings.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sock.sendall(frame)
                except OSError:  # the server answered and closed: read what it said
                    break
                sent += len(piece)
        assert time.monotonic() < deadline, "no answer while the body was being sent"
        return sock.recv(65536), sent


# -- nesting, content types, encodings ---------------------------------------------------------

def test_100k_nested_lists_are_a_clean_400(http):
    content = '{"model": "echo", "messages": [{"role": "user", "content": ' + "[" * 100_000 + "]" * 100_000 + "}]}"
    error = error_of(post_raw(http, "/v1/chat/completions", content), 400)
    assert error["message"] == "The request body is not valid JSON: it is nested too deeply"


@pytest.mark.parametrize("where", [
    '"messages": [{"role": "user", "content": DEEP}]',  # validated against the schema
    '"messages": [{"role": "user", "content": "hi"}], "metadata": {"a": DEEP}',
    '"messages": [{"role": "user", "content": "hi"}], "response_format": '
    '{"type": "json_schema", "json_schema": {"name": "x", "schema": {"x": DEEP}}}',  # free-form, to the grammar
    '"messages": [{"role": "user", "content": "hi"}], "zzz": DEEP',  # unknown field
])
def test_deep_nesting_just_below_the_parser_limit_is_400_on_the_real_backend(hostile_server, http, where):
    deep = "[" * 900 + "]" * 900
    content = '{"model": "demo", "max_tokens": 2, ' + where.replace("DEEP", deep) + "}"
    error_of(post_raw(http, "/v1/chat/completions", content), 400)
    still_serving(hostile_server, "demo")


@pytest.mark.parametrize(("content_type", "expected"), [
    ("text/plain", "text/plain"),
    ("multipart/form-data; boundary=x", "multipart/form-data"),
    ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded"),
    ("application/xml", "application/xml"),
    ("", "()"),
])
def test_a_wrong_content_type_is_415(http, content_type, expected):
    error = error_of(post_raw(http, "/v1/chat/completions", CHAT_BODY, content_type), 415)
    assert error["code"] == "unsupported_media_type" and expected in error["message"]


def test_a_real_multipart_upload_is_415(http):
    error = error_of(http.post("/v1/chat/completions", files={"file": ("a.json", CHAT_BODY.encode())}), 415)
    assert error["code"] == "unsupported_media_type"


def test_a_json_body_without_content_type_is_read_as_json(http):
    """connexion validates such a body as the operation's JSON; the handler now reads it so too
    (it was handed the raw bytes: a 500)."""
    response = post_raw(http, "/v1/chat/completions", CHAT_BODY, content_type=None)
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
    error_of(post_raw(http, "/v1/chat/completions", '{"model": "echo"}', content_type=None), 400)


@pytest.mark.parametrize(("content", "detail"), [
    pytest.param(b'{"model": "echo", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "not valid utf-8",
                 id="invalid-bytes"),
    pytest.param(b'{"model": "echo", "messages": [{"role": "user", "content": "\xc0\xaf"}]}', "not valid utf-8",
                 id="overlong"),
    pytest.param(b'{"model": "echo", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', "not valid utf-8",
                 id="encoded-surrogate"),
    pytest.param('{"model": "echo"}'.encode("utf-16"), "not valid utf-8", id="utf-16"),
    pytest.param(b'{"model": "demo", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
                 r"unpaired surrogate '\ud800'", id="escaped-surrogate-chat"),
    pytest.param(b'{"model": "demo", "prompt": "\\udfff"}', "unpaired surrogate", id="escaped-surrogate-prompt"),
    pytest.param(b'{"model": "echo", "messages": [{"role": "user", "content": "hi"}], "metadata": {"\\udc00": "x"}}',
                 "unpaired surrogate", id="escaped-surrogate-key"),
])
def test_invalid_text_is_400(hostile_server, http, content, detail):
    path = "/v1/completions" if b'"prompt"' in content else "/v1/chat/completions"
    assert detail in error_of(post_raw(http, path, content), 400)["message"]
    still_serving(hostile_server, "demo")


GRINNING = "\U0001F600"
ESCAPED = "\\ud83d\\ude00"  # GRINNING as a JSON surrogate-pair escape


def test_a_paired_surrogate_escape_is_one_character(http):
    # The echo backend shows what reached it: "stop" in its echo, an input's length as an embedding's first value.
    chat = post_raw(http, "/v1/chat/completions",
                    f'{{"model": "echo", "stop": "{ESCAPED}", "messages": [{{"role": "user", "content": "{ESCAPED}"}}]}}')
    assert chat.status_code == 200, chat.text
    assert json.loads(chat.json()["choices"][0]["message"]["content"])["stop"] == GRINNING
    embedding = post_raw(http, "/v1/embeddings", f'{{"model": "echo", "input": "{ESCAPED}"}}')
    assert embedding.status_code == 200, embedding.text
    assert embedding.json()["data"][0]["embedding"][0] == 1.0  # len(input) as the backend got it
    # The real model gets the same tokens as for the character sent as UTF-8.
    for path, template in [("/v1/chat/completions", '"messages": [{"role": "user", "content": "TEXT"}]'),
                           ("/v1/completions", '"prompt": "TEXT"')]:
        counts = {spelled: _prompt_tokens(http, path, '{"model": "demo", "max_tokens": 1, ' +
                                          template.replace("TEXT", spelled) + "}")
                  for spelled in (ESCAPED, GRINNING, "x")}
        assert counts[ESCAPED] == counts[GRINNING] != counts["x"], (path, counts)


def _prompt_tokens(http, path: str, content: str) -> int:
    response = post_raw(http, path, content)
    assert response.status_code == 200, response.text
    return response.json()["usage"]["prompt_tokens"]


def test_dropped_field_names_cannot_break_or_inject_headers(http):
    response = http.post("/v1/chat/completions", json={
        "model": "lenient", "messages": MESSAGES, "a\r\nx-injected: 1": 1, "größe✓": 2})
    assert response.status_code == 200, response.text
    assert "x-injected" not in response.headers
    assert response.headers["x-localai-dropped-fields"] == "a\\r\\nx-injected: 1, gr\\xf6\\xdfe\\u2713"


# -- limits: max_tokens, n, context -------------------------------------------------------------

@pytest.mark.parametrize(("path", "field", "extra"), [
    ("/v1/chat/completions", "max_tokens", {"messages": MESSAGES}),
    ("/v1/chat/completions", "max_completion_tokens", {"messages": MESSAGES}),
    ("/v1/completions", "max_tokens", {"prompt": "hi"}),
])
def test_huge_max_tokens_is_capped_by_the_context(hostile_server, http, path, field, extra):
    """max_tokens is an upper bound: generation ends where the context does, with finish_reason
    "length", as in llama.cpp's own server (OpenAI refuses above a model's output limit; a local
    model's only limit is its context, which the answer reports)."""
    response = http.post(path, json={"model": "demo", field: 10**9, "seed": 1, **extra,
                                      "x-localai-extensions": {"ignore_eos": True}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["total_tokens"] == CONTEXT_SIZE
    still_serving(hostile_server, "demo")


@pytest.mark.parametrize("model", ["echo", "demo"])
def test_n_above_the_spec_maximum_is_400(http, model):
    error = error_of(http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, "n": 1000}), 400)
    assert error["param"] == "n" and "128" in error["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_n_at_the_spec_maximum_answers_all_choices(http, stream):
    response = http.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES, "n": 128, "stream": stream})
    assert response.status_code == 200
    if stream:
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        finished = {c["index"] for e in events[:-1] for c in json.loads(e)["choices"] if c["finish_reason"]}
        assert finished == set(range(128))
    else:
        assert [c["index"] for c in response.json()["choices"]] == list(range(128))


def test_n_at_the_spec_maximum_on_the_real_backend(hostile_server, http):
    response = http.post("/v1/completions", json={"model": "demo", "prompt": "hi", "n": 128, "max_tokens": 2})
    assert response.status_code == 200
    assert len(response.json()["choices"]) == 128
    still_serving(hostile_server, "demo")


@pytest.mark.parametrize(("path", "param", "extra"), [
    ("/v1/completions", "prompt", {"prompt": "hello " * 5000}),
    ("/v1/completions", "prompt", {"prompt": [7] * (CONTEXT_SIZE + 1)}),
    ("/v1/chat/completions", "messages", {"messages": [{"role": "user", "content": "hello " * 5000}]}),
])
@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_longer_than_the_context_is_400_context_length_exceeded(hostile_server, http, path, param, extra,
                                                                         stream):
    response = http.post(path, json={"model": "demo", "max_tokens": 4, "stream": stream, **extra})
    error = error_of(response, 400)  # a plain HTTP error, streamed or not
    assert (error["code"], error["param"]) == ("context_length_exceeded", param)
    assert f"maximum context length is {CONTEXT_SIZE} tokens" in error["message"]
    still_serving(hostile_server, "demo")
