"""Real inference: the official openai client against a real server on the shipped
registrations, which serve the generated demo GGUF through llama-cpp-python (``demo``) and
gpt4all (``demo-gpt4all``). Bodies and stream chunks are checked against the response schemas
of the served document (:class:`~tests.conftest.ResponseSchemas`). Each instance the backends
load is wrapped by an :class:`~tests.fake_backend.OverlapCounter`, which counts two generations
on one instance at once, streamed or not.
"""

from __future__ import annotations

import base64
import json
import struct
import time

import httpx
import jsonschema
import openai
import pytest

from localai_runtime.backends import BackendRegistry
from tests.conftest import active_generations, check_full_queue, live_server, plain_request, wait_until
from tests.fake_backend import OverlapCounter

LLAMA, GPT4ALL = "demo", "demo-gpt4all"
BOTH = [LLAMA, GPT4ALL]
MESSAGES = [{"role": "user", "content": "Tell me a story about a cat."}]


@pytest.fixture(scope="module")
def overlaps() -> OverlapCounter:
    return OverlapCounter()


@pytest.fixture(scope="module")
def real(built_spec, overlaps):
    backends = overlaps.wrap(BackendRegistry.from_entry_points(), "llama-cpp", "gpt4all")
    with live_server(built_spec, backends=backends, queue_size=1) as live:
        yield live


def sse(text: str) -> list[dict]:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(event) for event in events[:-1]]


@pytest.mark.parametrize("model", BOTH)
def test_chat_plain_and_streamed_agree(real, response_schemas, model):
    client = real.client()
    plain = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=24, temperature=0)
    text = plain.choices[0].message.content
    assert text and plain.choices[0].finish_reason == "length"
    assert plain.usage.completion_tokens == 24 and plain.usage.prompt_tokens > 0
    with real.http() as http:
        raw = http.post("/v1/chat/completions", json={
            "model": model, "messages": MESSAGES, "max_tokens": 24, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}})
        body = http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, "max_tokens": 4}).json()
    chunks = sse(raw.text)
    for chunk in chunks:
        response_schemas.check("CreateChatCompletionStreamResponse", chunk)
    response_schemas.check("CreateChatCompletionResponse", body)
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert streamed == text
    assert chunks[-1]["usage"]["completion_tokens"] == 24


@pytest.mark.parametrize("model", BOTH)
def test_completion_plain_and_streamed_agree(real, response_schemas, model):
    client = real.client()
    plain = client.completions.create(model=model, prompt="Once upon a time", max_tokens=20, temperature=0)
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=20, temperature=0, stream=True) if c.choices)
    assert streamed == plain.choices[0].text != ""
    with real.http() as http:
        raw = http.post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 5, "stream": True})
        body = http.post("/v1/completions", json={"model": model, "prompt": "x", "max_tokens": 5}).json()
    for chunk in sse(raw.text):
        response_schemas.check("CreateCompletionStreamResponse", chunk)
    response_schemas.check("CreateCompletionResponse", body)


@pytest.mark.parametrize("model", BOTH)
def test_n_choices(real, model):
    completion = real.client().chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=6, temperature=0.9, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert all(c.message.content for c in completion.choices)
    assert completion.usage.completion_tokens == 12


@pytest.mark.parametrize("model", BOTH)
def test_stop_sequence(real, model):
    client = real.client()
    full = client.completions.create(model=model, prompt="Once", max_tokens=40, temperature=0).choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 2]
    cut = client.completions.create(model=model, prompt="Once", max_tokens=40, temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full[:full.index(stop)]


def test_seed_reproducibility_llama(real):
    client = real.client()

    def sample(seed):
        return client.completions.create(model=LLAMA, prompt="Once", max_tokens=24, temperature=1.0, seed=seed).choices[0].text

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1


def test_seed_is_dropped_and_reported_by_gpt4all(real):
    raw = real.client().completions.with_raw_response.create(model=GPT4ALL, prompt="Once", max_tokens=4, seed=7)
    assert raw.parse().choices[0].text
    assert raw.headers["x-localai-dropped-fields"] == "seed"


def test_structured_output_matches_the_schema(real):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    completion = real.client().chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=200, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)
    as_object = real.client().chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=200, temperature=0, response_format={"type": "json_object"})
    assert isinstance(json.loads(as_object.choices[0].message.content), dict)


def test_grammar_extension(real):
    completion = real.client().completions.create(
        model=LLAMA, prompt="Answer:", max_tokens=8, extra_body={"x-localai-extensions": {"grammar": 'root ::= "yes" | "no"'}})
    assert completion.choices[0].text in ("yes", "no")


def test_logprobs_reach_the_client(real):
    chat = real.client().chat.completions.create(
        model=LLAMA, messages=MESSAGES, max_tokens=5, logprobs=True, top_logprobs=2, temperature=0)
    entries = chat.choices[0].logprobs.content
    assert len(entries) == 5 and all(len(e.top_logprobs) == 2 and e.logprob <= 0 for e in entries)
    assert "".join(e.token for e in entries) == chat.choices[0].message.content
    legacy = real.client().completions.create(model=LLAMA, prompt="Once", max_tokens=4, logprobs=3, temperature=0)
    assert len(legacy.choices[0].logprobs.tokens) == 4 and len(legacy.choices[0].logprobs.top_logprobs[0]) == 3


def test_unsupported_parameter_is_refused_by_llama(real):
    with pytest.raises(openai.BadRequestError) as raised:
        real.client().chat.completions.create(
            model=LLAMA, messages=MESSAGES, extra_body={"x-localai-extensions": {"n_keep": 5}})
    assert (raised.value.code, raised.value.param) == ("unsupported_parameter", "x-localai-extensions.n_keep")


def test_unknown_model(real):
    with pytest.raises(openai.NotFoundError) as raised:
        real.client().chat.completions.create(model="llama-3-70b", messages=MESSAGES)
    assert raised.value.code == "model_not_found"


def test_embeddings(real, response_schemas):
    client = real.client()
    result = client.embeddings.create(model=LLAMA, input=["hello", "world", "hello"])
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert vectors[0] == vectors[2] != vectors[1]
    with real.http() as http:
        body = http.post("/v1/embeddings", json={"model": LLAMA, "input": "hello", "encoding_format": "base64"}).json()
    response_schemas.check("CreateEmbeddingResponse", body)
    decoded = struct.unpack("<64f", base64.b64decode(body["data"][0]["embedding"]))
    assert decoded == pytest.approx(vectors[0], rel=1e-6)
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=GPT4ALL, input="x")
    assert "serves: createChatCompletion, createCompletion" in raised.value.message


def test_streams_never_split_a_utf8_character(real):
    client = real.client()
    for seed in range(4):
        kwargs = dict(model=LLAMA, prompt="日本語 ", max_tokens=48, temperature=1.5, seed=seed)
        plain = client.completions.create(**kwargs).choices[0].text
        streamed = "".join(c.choices[0].text for c in client.completions.create(**kwargs, stream=True) if c.choices)
        assert streamed == plain
        assert "\ufffd" not in streamed


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_longer_than_the_context_is_400(real, stream):
    with pytest.raises(openai.BadRequestError) as raised:
        real.client().completions.create(model=LLAMA, prompt="word " * 3000, max_tokens=4, stream=stream)
    assert raised.value.code == "context_length_exceeded"
    assert real.client().completions.create(model=LLAMA, prompt="still fine", max_tokens=2).choices


def readyz(server) -> dict:
    with server.http() as http:
        return http.get("/readyz").json()


@pytest.mark.parametrize("model", BOTH)
def test_disconnect_mid_stream_frees_the_instance_and_health_answers_during_generation(real, overlaps, model):
    with httpx.Client(base_url=real.url, timeout=60) as http, http.stream("POST", "/v1/completions",
                     json={"model": model, "prompt": "Once", "max_tokens": 1500, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        during = readyz(real)  # answered while the generation runs
    assert during["status"] == "ready" and during["active_generations"] >= 1
    deadline = time.monotonic() + 30
    while readyz(real)["active_generations"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert readyz(real)["active_generations"] == 0
    assert real.client().completions.create(model=model, prompt="again", max_tokens=3).choices[0].text
    assert overlaps.overlaps == 0


@pytest.mark.parametrize("model", BOTH)
@pytest.mark.parametrize("stream", [False, True])
def test_a_request_cut_mid_generation_keeps_its_instance_until_its_generation_ends(real, overlaps, model, stream):
    """The client goes away while its generation runs, and another request for the model's one
    instance follows at once: it must wait for the cut generation's thread to end."""
    before = (overlaps.runs, overlaps.stopped)
    # 8 x 1500 tokens: seconds of work, cut within milliseconds of its start
    body = {"model": model, "prompt": "Once", "max_tokens": 1500, "n": 8, "stream": stream,
            "x-localai-extensions": {"ignore_eos": True}}
    with plain_request(real, "/v1/completions", body):
        wait_until(lambda: active_generations(real) == 1, "the generation runs")
    assert real.client().completions.create(model=model, prompt="again", max_tokens=3).choices[0].text
    assert overlaps.stopped == before[1] + 1  # the cut generation was stopped, not run to its end
    assert overlaps.runs == before[0] + 2
    assert overlaps.overlaps == 0


@pytest.mark.parametrize("model", BOTH)
@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_answers_429(real, overlaps, model, stream):
    check_full_queue(real, "createCompletion", "/v1/completions",
                     {"model": model, "prompt": "Once", "max_tokens": 4, "stream": stream})
    assert overlaps.overlaps == 0
