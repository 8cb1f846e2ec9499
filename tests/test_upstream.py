"""The openai-upstream backend against real engines on loopback: two llama-cpp-python servers
(``python -m llama_cpp.server``) on the demo model, a second localai-runtime, and stalling
servers; the official client talks to this server only."""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import time

import httpx
import openai
import pytest

from localai_runtime.demo_model import ensure_demo_model
from tests.conftest import free_port, live_server, wait_until
from tests.upstreams import LlamaServer, StallingServer

KEY_ENV = "LOCALAI_TEST_UPSTREAM_KEY"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    directory = tmp_path_factory.mktemp("engines")
    model = ensure_demo_model()
    servers = [LlamaServer(model, free_port(), directory / f"engine-{i}.log").start() for i in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.kill()


@pytest.fixture(scope="module")
def second(built_spec):
    """Another localai-runtime (the shipped demo registrations) as an upstream."""
    with live_server(built_spec, store=False) as live:
        yield live


@pytest.fixture(scope="module")
def stalling():
    servers = {mode: StallingServer(mode) for mode in ("silent", "one_event", "cut", "broken", "error_field", "json", "stream",
                                                         "500", "401")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def front(built_spec, engines, second, stalling, tmp_path_factory):
    directory = tmp_path_factory.mktemp("front")
    a, b = engines
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    (directory / "upstreams.yaml").write_text(textwrap.dedent(f"""\
        - registration: {{model: big, operations: [createChatCompletion, createCompletion, createResponse]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{a.base_url}, {b.base_url}]
            upstream_model: demo-engine
            timeouts: {{connect: 2, first_byte: 60, idle: 60}}
            failures_to_cool: 1
            cooldown_seconds: 1
        - registration: {{model: relayed, operations: [createChatCompletion, createEmbedding, createResponse]}}
          local_settings: {{backend: openai-upstream, base_urls: ["{second.url}/v1"], upstream_model: demo}}
        - registration: {{model: stalled, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{stalling["silent"].base_url}]
            upstream_model: m
            api_key_env: {KEY_ENV}
            timeouts: {{first_byte: 1}}
        - registration: {{model: patient, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{stalling["silent"].base_url}]
            upstream_model: m
            timeouts: {{first_byte: 120}}
        - registration: {{model: half, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{stalling["one_event"].base_url}]
            upstream_model: m
            timeouts: {{first_byte: 30, idle: 1}}
        - registration: {{model: lingering, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{stalling["one_event"].base_url}]
            upstream_model: m
            timeouts: {{first_byte: 30, idle: 120}}
        - registration: {{model: cut, operations: [createChatCompletion]}}
          local_settings: {{backend: openai-upstream, base_urls: [{stalling["cut"].base_url}], upstream_model: m}}
        - registration: {{model: broken-off, operations: [createChatCompletion]}}
          local_settings: {{backend: openai-upstream, base_urls: [{stalling["broken"].base_url}], upstream_model: m}}
        - registration: {{model: erring, operations: [createChatCompletion, createResponse]}}
          local_settings: {{backend: openai-upstream, base_urls: [{stalling["error_field"].base_url}], upstream_model: m}}
        - registration: {{model: unstreamed, operations: [createChatCompletion]}}
          local_settings: {{backend: openai-upstream, base_urls: [{stalling["json"].base_url}], upstream_model: m}}
        - registration: {{model: kept, operations: [createChatCompletion]}}
          local_settings: {{backend: openai-upstream, base_urls: [{stalling["stream"].base_url}], upstream_model: m}}
        - registration: {{model: flaky, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{stalling["500"].base_url}, {a.base_url}]
            upstream_model: m
            failures_to_cool: 5
        - registration: {{model: broken, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{stalling["500"].base_url}]
            upstream_model: m
            failures_to_cool: 1
        - registration: {{model: keyless, operations: [createChatCompletion]}}
          local_settings: {{backend: openai-upstream, base_urls: [{stalling["401"].base_url}], upstream_model: m}}
        - registration: {{model: nowhere, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{nowhere}]
            upstream_model: m
            failures_to_cool: 1
            cooldown_seconds: 60
        - registration: {{model: picky, operations: [createChatCompletion]}}
          local_settings:
            backend: openai-upstream
            base_urls: [{a.base_url}]
            upstream_model: m
            honoured: [messages, max_tokens, x-localai-extensions.top_k]
        """))
    os.environ[KEY_ENV] = "sekrit-upstream-key"
    try:
        with live_server(built_spec, configs_dir=directory, store=True) as live:
            yield live
    finally:
        os.environ.pop(KEY_ENV, None)


def upstreams(front, model: str) -> list[dict]:
    data = front.http().get("/v1/localai/registrations").json()["data"]
    return next(entry for entry in data if entry["model"] == model)["upstreams"]


def test_chat_and_completions_go_through_both_replicas_under_our_model_name(front, engines):
    client = front.client()
    for _ in range(4):
        answer = client.chat.completions.create(model="big", messages=HI, max_tokens=8, temperature=0)
        assert answer.model == "big"
        assert answer.choices[0].message.content
        assert answer.usage.completion_tokens > 0 and answer.usage.prompt_tokens > 0
    completion = client.completions.create(model="big", prompt="Once upon", max_tokens=5, temperature=0)
    assert completion.model == "big" and completion.choices[0].text
    status = {entry["url"]: entry for entry in upstreams(front, "big")}
    assert set(status) == {engine.base_url for engine in engines}
    assert all(entry["requests"].get("ok", 0) >= 2 and entry["state"] == "healthy" for entry in status.values())


def test_a_stream_passes_through_event_by_event_and_says_the_same_as_the_whole_answer(front):
    client = front.client()
    whole = client.chat.completions.create(model="big", messages=HI, max_tokens=24, temperature=0)
    with front.http().stream("POST", "/v1/chat/completions", json={
            "model": "big", "messages": HI, "max_tokens": 24, "temperature": 0, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["x-accel-buffering"] == "no"
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["model"] == "big" for chunk in chunks)
    assert not any(chunk.get("usage") for chunk in chunks), "usage was not asked for"
    text = "".join(choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"])
    assert text == whole.choices[0].message.content
    assert len(chunks) > 3
    streamed = client.chat.completions.create(model="relayed", messages=HI, max_tokens=6, stream=True,
                                              stream_options={"include_usage": True})
    last = list(streamed)[-1]
    assert last.usage is not None and last.usage.completion_tokens > 0


def test_embeddings_come_back_as_the_upstream_made_them_as_floats_and_base64(front, second):
    ours = front.client().embeddings.create(model="relayed", input=["red apple", "blue sky"])
    direct = second.client().embeddings.create(model="demo", input=["red apple", "blue sky"])
    assert ours.model == "relayed"
    assert [e.embedding for e in ours.data] == [e.embedding for e in direct.data]
    assert ours.usage.prompt_tokens == direct.usage.prompt_tokens > 0
    raw = front.http().post("/v1/embeddings", json={"model": "relayed", "input": "red apple",
                                                    "encoding_format": "base64"}).json()
    vector = raw["data"][0]["embedding"]
    decoded = list(struct.unpack(f"<{len(base64.b64decode(vector)) // 4}f", base64.b64decode(vector)))
    assert decoded == pytest.approx(direct.data[0].embedding, rel=1e-6)


def test_responses_and_their_chains_run_on_the_upstreams_chat(front):
    client = front.client()
    first = client.responses.create(model="relayed", input="Say something.", max_output_tokens=16)
    assert first.output_text and first.usage.input_tokens > 0
    if first.status == "incomplete":  # the demo model's random words rarely stop by themselves
        assert first.incomplete_details.reason == "max_output_tokens" and first.usage.output_tokens == 16
    second = client.responses.create(model="relayed", input="And more.", previous_response_id=first.id,
                                     max_output_tokens=16)
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text
    events = list(client.responses.create(model="big", input="hello", max_output_tokens=16, stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete")
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text and text == events[-1].response.output_text


def test_an_upstream_error_keeps_its_status_and_names_the_upstream(front, engines):
    with pytest.raises(openai.BadRequestError) as caught:
        front.client().chat.completions.create(
            model="big", messages=[{"role": "user", "content": "hello world " * 600}], max_tokens=5)
    error = caught.value.body
    assert error["code"] == "context_length_exceeded" and error["param"] == "messages"
    assert any(engine.base_url in error["message"] for engine in engines)
    assert all(entry["state"] == "healthy" for entry in upstreams(front, "big")), "a 400 is not the replica's fault"


def test_the_registration_says_which_fields_the_upstream_honours(front):
    client = front.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="picky", messages=HI, max_tokens=4, temperature=0.5)
    assert caught.value.body["param"] == "temperature"
    answer = client.chat.completions.create(model="picky", messages=HI, max_tokens=4,
                                            extra_body={"x-localai-extensions": {"top_k": 1}})
    assert answer.choices[0].message.content is not None
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="big", messages=HI, max_tokens=4,
                                       extra_body={"x-localai-extensions": {"cutstrings": ["a"]}})
    assert caught.value.body["param"] == "x-localai-extensions.cutstrings"


def test_an_upstream_that_stalls_trips_the_first_byte_timeout_with_a_504(front, stalling):
    started = time.monotonic()
    response = front.http().post("/v1/chat/completions", json={"model": "stalled", "messages": HI})
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert "within 1 s" in response.json()["error"]["message"]
    assert time.monotonic() - started < 10
    head = stalling["silent"].heads[-1].lower()
    assert "authorization: bearer sekrit-upstream-key" in head, "the key comes from api_key_env"


def test_a_stream_that_stalls_after_its_first_event_ends_with_an_error_event(front):
    with front.http().stream("POST", "/v1/chat/completions", json={
            "model": "half", "messages": HI, "stream": True}) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "first"
    assert json.loads(events[0])["model"] == "half"
    assert json.loads(events[1])["error"]["code"] == "upstream_timeout"
    assert events[-1] == "[DONE]"


def test_a_client_that_leaves_cancels_the_upstream_request(front, stalling):
    silent = stalling["silent"]
    before_heads, before_closed = len(silent.heads), silent.closed_by_client
    with pytest.raises(httpx.ReadTimeout):
        # long enough for the request to reach the engine even on a loaded machine
        httpx.post(front.url + "/v1/chat/completions", json={"model": "patient", "messages": HI}, timeout=3)
    assert len(silent.heads) == before_heads + 1
    wait_until(lambda: silent.closed_by_client > before_closed, "the upstream connection is closed", timeout=10)
    wait_until(lambda: upstreams(front, "patient")[0]["in_flight"] == 0, "nothing is in flight", timeout=10)


def test_a_client_that_leaves_a_stream_cancels_the_upstream_request(front, stalling):
    one_event = stalling["one_event"]
    before = one_event.closed_by_client
    with front.http().stream("POST", "/v1/chat/completions", json={
            "model": "lingering", "messages": HI, "stream": True}) as response:
        first = next(line for line in response.iter_lines() if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["content"] == "first"
    wait_until(lambda: one_event.closed_by_client > before, "the upstream stream is closed", timeout=10)
    wait_until(lambda: upstreams(front, "lingering")[0]["in_flight"] == 0, "nothing is in flight", timeout=10)
    assert upstreams(front, "lingering")[0]["requests"] == {"cancelled": 1}


def test_an_unreachable_upstream_is_a_502_then_a_503_while_it_cools_down(front):
    first = front.http().post("/v1/chat/completions", json={"model": "nowhere", "messages": HI})
    assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_unavailable"
    second = front.http().post("/v1/chat/completions", json={"model": "nowhere", "messages": HI})
    assert second.status_code == 503 and int(second.headers["retry-after"]) > 30
    (entry,) = upstreams(front, "nowhere")
    assert entry["state"] == "cooling" and entry["requests"] == {"connect_error": 1}


def test_a_dead_replica_fails_over_cools_down_and_comes_back_when_restarted(front, engines):
    client = front.client()
    alive, dead = engines
    dead.kill()
    for _ in range(6):
        answer = client.chat.completions.create(model="big", messages=HI, max_tokens=4, temperature=0)
        assert answer.choices[0].message.content is not None
    status = {entry["url"]: entry for entry in upstreams(front, "big")}
    assert status[dead.base_url]["state"] == "cooling"
    assert status[dead.base_url]["requests"]["connect_error"] == 1
    metrics = front.http().get("/metrics").text
    assert 'localai_upstream_failovers_total{model_name="big"} 1.0' in metrics
    assert f'localai_upstream_up{{model_name="big",upstream="{dead.base_url}"}} 0.0' in metrics
    served_before = status[dead.base_url]["requests"].get("ok", 0)

    dead.start().wait_ready()

    def back() -> bool:
        client.chat.completions.create(model="big", messages=HI, max_tokens=4)
        entry = next(e for e in upstreams(front, "big") if e["url"] == dead.base_url)
        return entry["state"] == "healthy" and entry["requests"].get("ok", 0) > served_before

    wait_until(back, "the restarted replica takes requests again", timeout=30)
    entry = next(e for e in upstreams(front, "big") if e["url"] == dead.base_url)
    assert entry["requests"]["probe_ok"] == 1
    assert f'localai_upstream_up{{model_name="big",upstream="{dead.base_url}"}} 1.0' in front.http().get(
        "/metrics").text


def raw_events(front, model: str) -> tuple[int, list[str]]:
    with front.http().stream("POST", "/v1/chat/completions", json={
            "model": model, "messages": HI, "stream": True}) as response:
        return response.status_code, [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize(("model", "mode", "code", "words", "outcome"), [
    ("cut", "cut", "bad_upstream_answer", "without [DONE]", "bad_answer"),
    ("broken-off", "broken", "upstream_unavailable", "broke off", "broken"),
])
def test_a_stream_cut_before_done_ends_with_an_error_event_not_a_success(front, stalling, model, mode, code, words,
                                                                         outcome):
    status, events = raw_events(front, model)
    assert status == 200
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "first"
    error = json.loads(events[1])["error"]
    assert error["code"] == code and words in error["message"]
    assert stalling[mode].base_url in error["message"]
    assert events[-1] == "[DONE]"
    assert upstreams(front, model)[0]["requests"] == {outcome: 1}


def test_an_error_field_in_the_stream_becomes_an_error_event_naming_the_upstream(front, stalling):
    status, events = raw_events(front, "erring")
    assert status == 200 and len(events) == 3
    error = json.loads(events[1])["error"]
    assert "boom" in error["message"] and stalling["error_field"].base_url in error["message"]
    assert events[-1] == "[DONE]"
    assert upstreams(front, "erring")[0]["requests"] == {"stream_error": 1}
    with pytest.raises(openai.InternalServerError, match="boom"):
        front.client().responses.create(model="erring", input="hi")


def test_a_whole_answer_to_a_stream_request_is_a_502_at_once(front):
    started = time.monotonic()
    response = front.http().post("/v1/chat/completions", json={"model": "unstreamed", "messages": HI,
                                                               "stream": True})
    assert response.status_code == 502 and response.json()["error"]["code"] == "bad_upstream_answer"
    assert "application/json" in response.json()["error"]["message"]
    assert time.monotonic() - started < 5


def test_relayed_streams_keep_their_connection_to_the_engine(front, stalling):
    for _ in range(3):
        status, events = raw_events(front, "kept")
        assert status == 200 and events[-1] == "[DONE]"
    assert stalling["stream"].connections == 1


def test_a_500_counts_against_a_replica_only_when_another_served_the_request(front):
    answer = front.client().chat.completions.create(model="flaky", messages=HI, max_tokens=4)
    assert answer.choices[0].message.content is not None
    failing = upstreams(front, "flaky")[0]
    assert failing["requests"] == {"upstream_5xx": 1} and failing["consecutive_failures"] == 1
    for _ in range(2):
        response = front.http().post("/v1/chat/completions", json={"model": "broken", "messages": HI})
        assert response.status_code == 500 and "kaput" in response.json()["error"]["message"]
    (alone,) = upstreams(front, "broken")
    assert alone["state"] == "healthy" and alone["consecutive_failures"] == 0, "the request may be at fault"


def test_an_engine_refusing_our_key_is_a_502_not_the_clients_401(front):
    response = front.http().post("/v1/chat/completions", json={"model": "keyless", "messages": HI})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_auth_failed"
    assert "api_key_env" in response.json()["error"]["message"]


@pytest.mark.parametrize(("settings", "expected"), [
    ("base_urls: ['http://engine:80a0/v1']", r"base_urls\[0\]: 'http://engine:80a0/v1' is not usable"),
    ("base_urls: ['http://a:1/v1', 'http://a:1/v1/']", r"base_urls\[1\]: .* is the same replica as base_urls\[0\]"),
    ("base_urls: ['http://a:1/v1'], honoured: [messages, temprature]",
     r"local_settings.honoured\[1\]: 'temprature' is not a request field"),
    ("base_urls: ['http://a:1/v1'], api_key_env: LOCALAI_TEST_UNSET_VARIABLE",
     r"the environment variable LOCALAI_TEST_UNSET_VARIABLE is not set"),
])
def test_start_up_names_what_is_wrong_in_the_settings(tmp_path, built_spec, settings, expected):
    (tmp_path / "up.yaml").write_text(
        "registration: {model: m, operations: [createChatCompletion]}\n"
        f"local_settings: {{backend: openai-upstream, upstream_model: x, {settings}}}\n")
    result = subprocess.run([sys.executable, "-m", "localai_runtime.cli", "check", "--configs", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert re.search(expected, result.stdout + result.stderr), result.stdout + result.stderr


def test_output_filters_in_an_upstream_registrations_defaults_stop_start_up(tmp_path):
    (tmp_path / "up.yaml").write_text(
        "registration: {model: m, operations: [createChatCompletion]}\n"
        "local_settings: {backend: openai-upstream, upstream_model: x, base_urls: ['http://a:1/v1']}\n"
        "request_defaults: {x-localai-extensions: {cutstrings: ['x']}}\n")
    result = subprocess.run([sys.executable, "-m", "localai_runtime.cli", "check", "--configs", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "request_defaults.x-localai-extensions.cutstrings: a relayed answer passes through" in result.stderr
