"""Registrations, merging and policy end to end: the official openai client against a real
server whose registrations use the echo backend (tests/fake_backend.py), registered through
the real backend registry. The echo backend answers with the request fields it received.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import shutil
import struct
import textwrap
import time

import httpx
import openai
import pytest

from localai_runtime.settings import resource_dir
from localai_runtime.spec.build import build_spec
from tests.conftest import active_generations, check_full_queue, live_server, model_pool, plain_request, wait_until
from tests.fake_backend import GATED, EchoBackend, EchoInstance, gate_closed, registry

CONFIGS = {
    "echo.yaml": """
        # chat and completions with defaults, overrides and the default (error) policy
        registration: {model: echo, operations: [createChatCompletion, createCompletion]}
        local_settings: {backend: echo}
        request_defaults:
          temperature: 0.5
          max_tokens: 100
          x-localai-extensions: {top_k: 3}
        request_overrides: {n: 1}
        ---
        registration: {model: echo, operations: [createEmbedding]}
        local_settings: {backend: echo}
        """,
    "lenient.yaml": """
        registration: {model: lenient, operations: [createChatCompletion]}
        local_settings: {backend: echo}
        policy: {unsupported_parameters: drop, unknown_parameters: drop}
        """,
    "slow.yaml": """
        registration: {model: slow, operations: [createChatCompletion]}
        local_settings: {backend: echo, delay_s: 0.05, parallel: 1}
        """,
    "parallel.yaml": """
        registration: {model: parallel, operations: [createCompletion]}
        local_settings: {backend: echo, delay_s: 0.05, parallel: 2}
        ---
        registration: {model: pair, operations: [createCompletion]}
        local_settings: {backend: echo, parallel: 2}
        """,
    "broken.yaml": """
        registration: {model: broken, operations: [createChatCompletion]}
        local_settings: {backend: echo, template: fail-to-load}
        ---
        registration: {model: nofile, operations: [createChatCompletion]}
        local_settings: {backend: echo, model_file: does-not-exist.gguf}
        """,
}

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("configs")
    for name, text in CONFIGS.items():
        (directory / name).write_text(textwrap.dedent(text))
    return directory


@pytest.fixture(scope="module")
def echo_server(built_spec, configs):
    with live_server(built_spec, backends=registry(), configs_dir=configs, queue_size=1) as live:
        yield live


def echoed(text: str) -> dict:
    return json.loads(text)


def test_defaults_request_and_overrides_reach_the_adapter_merged(echo_server):
    raw = echo_server.client().chat.completions.with_raw_response.create(
        model="echo", messages=MESSAGES, temperature=0.1, max_tokens=1000, n=1,
        extra_body={"x-localai-extensions": {"min_p": 0.2}},
    )
    completion = raw.parse()
    got = echoed(completion.choices[0].message.content)
    assert got["temperature"] == 0.1  # the request wins over the default
    assert got["max_tokens"] == 1000
    assert got["n"] == 1  # override
    assert got["x-localai-extensions"] == {"top_k": 3, "min_p": 0.2}  # merged key by key
    assert raw.headers["x-localai-registration"] == "echo (echo.yaml#0)"
    assert completion.object == "chat.completion" and completion.model == "echo"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 3 and completion.usage.total_tokens > 3


def test_defaults_apply_when_the_request_is_silent(echo_server):
    completion = echo_server.client().completions.create(model="echo", prompt="hello")
    got = echoed(completion.choices[0].text)
    assert (got["temperature"], got["max_tokens"], got["x-localai-extensions"]) == (0.5, 100, {"top_k": 3})
    assert completion.object == "text_completion"


def test_streamed_chat_equals_the_plain_one_and_ends_with_done(echo_server):
    client = echo_server.client()
    plain = client.chat.completions.create(model="echo", messages=MESSAGES, seed=1).choices[0].message.content
    chunks = list(client.chat.completions.create(
        model="echo", messages=MESSAGES, seed=1, stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # the adapter got the same request, plus the two stream fields (the client sends no "stream" when plain)
    assert "stream" not in echoed(plain)
    assert echoed(streamed) == {**echoed(plain), "stream": True, "stream_options": {"include_usage": True}}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    with echo_server.http() as http:
        raw = http.post("/v1/chat/completions", json={"model": "echo", "messages": MESSAGES, "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.text.rstrip().endswith("data: [DONE]")


def test_embeddings_float_and_base64(echo_server):
    client = echo_server.client()
    floats = client.embeddings.create(model="echo", input=["a", "bcd"], encoding_format="float")
    assert [d.embedding for d in floats.data] == [[1.0, 1.0, 0.5, -0.5], [3.0, 1.0, 0.5, -0.5]]
    with echo_server.http() as http:
        body = http.post("/v1/embeddings", json={"model": "echo", "input": "bcd", "encoding_format": "base64"}).json()
    decoded = struct.unpack("<4f", base64.b64decode(body["data"][0]["embedding"]))
    assert list(decoded) == [3.0, 1.0, 0.5, -0.5]


def test_unsupported_parameter_is_400_naming_it(echo_server):
    with pytest.raises(openai.BadRequestError) as raised:
        echo_server.client().chat.completions.create(model="echo", messages=MESSAGES, presence_penalty=0.5)
    assert raised.value.code == "unsupported_parameter" and raised.value.param == "presence_penalty"
    with pytest.raises(openai.BadRequestError) as extension:
        echo_server.client().chat.completions.create(
            model="echo", messages=MESSAGES, extra_body={"x-localai-extensions": {"mirostat": 2}})
    assert extension.value.param == "x-localai-extensions.mirostat"


def test_a_field_at_its_default_or_null_asks_for_nothing(echo_server):
    completion = echo_server.client().chat.completions.create(
        model="echo", messages=MESSAGES, presence_penalty=0, logprobs=False, stop=None)
    assert completion.choices[0].message.content


def test_unknown_parameter_is_400(echo_server):
    with pytest.raises(openai.BadRequestError) as raised:
        echo_server.client().chat.completions.create(model="echo", messages=MESSAGES, extra_body={"temprature": 1})
    assert raised.value.code == "unknown_parameter" and raised.value.param == "temprature"


def test_drop_policy_proceeds_and_reports_dropped_fields(echo_server):
    raw = echo_server.client().chat.completions.with_raw_response.create(
        model="lenient", messages=MESSAGES, presence_penalty=0.5, extra_body={"bogus": 1, "x-localai-extensions": {"mirostat": 1}})
    got = echoed(raw.parse().choices[0].message.content)
    assert "presence_penalty" not in got and "bogus" not in got and got["x-localai-extensions"] == {}
    assert raw.headers["x-localai-dropped-fields"] == "bogus, presence_penalty, x-localai-extensions.mirostat"


def test_invalid_extension_value_is_400_naming_it(echo_server):
    with pytest.raises(openai.BadRequestError) as raised:
        echo_server.client().chat.completions.create(
            model="echo", messages=MESSAGES, extra_body={"x-localai-extensions": {"top_k": "many"}})
    assert raised.value.param == "x-localai-extensions.top_k"


def test_unknown_model_is_404_and_wrong_operation_400(echo_server):
    client = echo_server.client()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as wrong:
        client.embeddings.create(model="lenient", input="x")
    assert wrong.value.param == "model" and "serves: createChatCompletion" in wrong.value.message


def test_models_are_listed_once_and_retrievable(echo_server):
    client = echo_server.client()
    assert [m.id for m in client.models.list()] == ["broken", "echo", "lenient", "nofile", "pair", "parallel", "slow"]
    assert client.models.retrieve("echo").owned_by == "localai-runtime"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_registrations_are_listed_with_defaults_and_policy(echo_server, configs):
    with echo_server.http() as http:
        listing = http.get("/v1/localai/registrations").json()["data"]
    echo_chat = next(r for r in listing if r["source"] == "echo.yaml#0")
    assert echo_chat["request_defaults"] == {"temperature": 0.5, "max_tokens": 100, "x-localai-extensions": {"top_k": 3}}
    assert echo_chat["policy"] == {"unsupported_parameters": "error", "unknown_parameters": "error", "hosted_tools": "error"}
    nofile = next(r for r in listing if r["model"] == "nofile")
    assert nofile["status"] == "unavailable" and nofile["local_settings"]["model_file"] == "does-not-exist.gguf"
    assert str(configs) not in json.dumps(listing)


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_that_cannot_load_is_503_and_the_rest_keeps_working(echo_server, stream):
    client = echo_server.client()
    for model in ("broken", "nofile"):
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model=model, messages=MESSAGES, stream=stream)
        assert raised.value.status_code == 503
        assert f"'{model}' is unavailable" in raised.value.message and raised.value.param == "model"
    assert client.chat.completions.create(model="echo", messages=MESSAGES).choices


def wait_idle(server, timeout=10.0) -> dict:
    with server.http() as http:
        deadline = time.monotonic() + timeout
        while True:
            ready = http.get("/readyz").json()
            if ready["active_generations"] == 0 or time.monotonic() > deadline:
                return ready
            time.sleep(0.02)


def test_disconnect_mid_stream_stops_the_generation(echo_server):
    # "user" (metadata) makes the echo long: about 60 pieces, 50 ms apart
    body = {"model": "slow", "messages": MESSAGES, "stream": True, "user": "u" * 400}
    with httpx.Client(base_url=echo_server.url, timeout=30) as http, \
            http.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    assert wait_idle(echo_server)["active_generations"] == 0
    produced, planned = EchoInstance.last_run
    assert planned > 50 and produced <= 4  # stopped within a token or two of the disconnect
    assert echo_server.client().chat.completions.create(model="slow", messages=MESSAGES).choices  # instance freed


@pytest.mark.parametrize("stream", [False, True])
def test_a_cancelled_generation_keeps_its_instance_until_its_thread_ends(echo_server, stream):
    """The client goes away while its generation's thread is busy (held at the gate, deaf to the
    stop): the next request for the one instance waits until that thread has ended."""
    before = EchoInstance.overlaps
    pool = model_pool(echo_server, "createChatCompletion", "slow")
    body = {"model": "slow", "messages": [{"role": "user", "content": GATED}], "stream": stream}
    with concurrent.futures.ThreadPoolExecutor(1) as threads:
        with gate_closed():
            with plain_request(echo_server, "/v1/chat/completions", body):
                wait_until(lambda: active_generations(echo_server) == 1, "the generation runs")
            again = threads.submit(echo_server.client().chat.completions.create, model="slow", messages=MESSAGES)
            wait_until(lambda: pool.waiting == 1 or again.done(), "the next request waits for the instance")
            assert not again.done() and active_generations(echo_server) == 1
        assert again.result().choices  # served once the cut generation's thread ended
    assert EchoInstance.overlaps == before
    assert wait_idle(echo_server)["active_generations"] == 0


@pytest.mark.parametrize("model", ["slow", "pair"])
@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_is_429_with_retry_after(echo_server, model, stream):
    """Every instance held (1 for "slow", 2 for "pair") and queue_size=1 request waiting:
    the next is 429; the waiting one is served once the instances are free."""
    if model == "slow":
        check_full_queue(echo_server, "createChatCompletion", "/v1/chat/completions",
                         {"model": model, "messages": MESSAGES, "stream": stream})
    else:
        check_full_queue(echo_server, "createCompletion", "/v1/completions",
                         {"model": model, "prompt": "x", "stream": stream})


def test_an_extension_added_by_a_patch_file_shows_validates_and_reaches_the_adapter(tmp_path, configs):
    patches = tmp_path / "patches"
    shutil.copytree(resource_dir("patches"), patches)
    (patches / "50-trace.yaml").write_text(textwrap.dedent("""
        # A field our clients send; the echo backend honours it.
        overlay: 1.0.0
        info: {title: trace, version: 1.0.0}
        actions:
          - target: $.components.schemas.CreateCompletionRequest.properties
            update:
              x-trace-level: {type: integer, minimum: 0, maximum: 9, description: Trace verbosity.}
        """))
    built = build_spec(spec_path=None, fragments_dir=resource_dir("spec"), patches_dir=patches)
    backends = registry()
    echo_backend = backends.get("echo")
    echo_backend.honoured = {**echo_backend.honoured,
                             "createCompletion": echo_backend.honoured["createCompletion"] | {"x-trace-level"}}
    with live_server(built, backends=backends, configs_dir=configs) as live:
        with live.http() as http:
            schema = http.get("/openapi.json").json()["components"]["schemas"]["CreateCompletionRequest"]
        assert schema["properties"]["x-trace-level"]["maximum"] == 9
        client = live.client()
        with pytest.raises(openai.BadRequestError) as raised:
            client.completions.create(model="echo", prompt="x", extra_body={"x-trace-level": 12})
        assert raised.value.param == "x-trace-level"
        text = client.completions.create(model="echo", prompt="x", extra_body={"x-trace-level": 4}).choices[0].text
        assert echoed(text)["x-trace-level"] == 4


def sse_payloads(text: str) -> list:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


@pytest.mark.parametrize("stream", [False, True])
def test_bodies_and_chunks_conform_to_the_spec(echo_server, response_schemas, stream):
    with echo_server.http() as http:
        chat = http.post("/v1/chat/completions", json={
            "model": "echo", "messages": MESSAGES, "stream": stream, "n": 1,
            **({"stream_options": {"include_usage": True}} if stream else {})})
        completion = http.post("/v1/completions", json={"model": "echo", "prompt": "x", "stream": stream})
        embedding = http.post("/v1/embeddings", json={"model": "echo", "input": ["a", "b"]})
    if stream:
        for chunk in sse_payloads(chat.text):
            response_schemas.check("CreateChatCompletionStreamResponse", chunk)
        for chunk in sse_payloads(completion.text):
            response_schemas.check("CreateCompletionStreamResponse", chunk)
    else:
        response_schemas.check("CreateChatCompletionResponse", chat.json())
        response_schemas.check("CreateCompletionResponse", completion.json())
    response_schemas.check("CreateEmbeddingResponse", embedding.json())


def test_an_error_after_the_stream_started_is_an_error_event_then_done(echo_server):
    with echo_server.http() as http:
        raw = http.post("/v1/completions", json={"model": "echo", "prompt": "fail after two pieces", "stream": True})
    assert raw.status_code == 200
    events = [line[len("data: "):] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "api_error" and "mid-generation" not in error["message"]  # no internals leaked
    assert [json.loads(e)["choices"][0]["text"] for e in events[:2]] != ["", ""]
    with pytest.raises(openai.APIError):
        list(echo_server.client().completions.create(model="echo", prompt="fail after two pieces", stream=True))


def test_an_error_after_the_stream_started_is_logged_once_with_its_operation(echo_server, caplog):
    with caplog.at_level(logging.INFO, logger="localai_runtime.errors"), echo_server.http() as http:
        raw = http.post("/v1/completions", json={"model": "echo", "prompt": "fail after two pieces", "stream": True})
    assert raw.status_code == 200 and '"error"' in raw.text
    [line] = [record for record in caplog.records if record.name == "localai_runtime.errors"]
    assert line.levelno == logging.ERROR
    assert line.getMessage().startswith("createCompletion -> 500 (in its stream) param=None code=None:")
    assert "mid-generation" in str(line.exc_info[1])  # the traceback, for the operator only


def test_a_filtered_stream_that_fails_before_its_first_chunk_still_ends_with_an_error_event(echo_server):
    # With trimstrings the text waits for the end of its choice: the stream began at the first piece all the same.
    body = {"model": "echo", "prompt": "fail after two pieces", "stream": True,
            "x-localai-extensions": {"trimstrings": ["x"]}}
    with echo_server.http() as http:
        raw = http.post("/v1/completions", json=body)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["error"]["type"] == "api_error"


def test_parallel_instances_serve_at_once_and_load_once(echo_server):
    before = EchoBackend.loads

    def request(_):
        with httpx.Client(base_url=echo_server.url, timeout=60) as http:
            return http.post("/v1/completions", json={"model": "parallel", "prompt": GATED}).status_code

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        with gate_closed():  # both generations wait at the gate: they run at the same time, or this times out
            futures = [pool.submit(request, i) for i in range(2)]
            wait_until(lambda: active_generations(echo_server) == 2, "both generations run")
            assert not any(f.done() for f in futures)
        assert [f.result() for f in futures] == [200, 200]
    assert EchoBackend.loads - before == 2  # two instances, each loaded once for both requests


def test_cutstrings_and_trimstrings_are_applied_by_the_server(echo_server):
    client = echo_server.client()
    extensions = {"cutstrings": ['"max_tokens": 100, '], "trimstrings": ["[{]", "[}]"]}
    plain = client.completions.create(model="echo", prompt="x", extra_body={"x-localai-extensions": extensions})
    text = plain.choices[0].text  # the echo of the request, as JSON, cut and trimmed
    # the echo starts '{"max_tokens": 100, "model": ...' and ends '...]}}' before cutting and trimming
    assert text.startswith('"model": "echo"') and text.endswith('"]}')
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="echo", prompt="x", stream=True, extra_body={"x-localai-extensions": extensions}) if c.choices)
    assert streamed.startswith('"model": "echo"') and streamed.endswith('"]}')
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="echo", prompt="x", extra_body={"x-localai-extensions": {"trimstrings": ["ok", "("]}})
    assert raised.value.param == "x-localai-extensions.trimstrings[1]"
