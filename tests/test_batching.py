"""The continuous-batching engine under load, with the demo model and Gemma 3 270M.

One registration per model with 16 slots in one context (``parallel: 16``), asked with the
official openai client from 16 threads at once: mixed lengths, stop sequences, grammars and
seeds all complete correctly; 50 streams cut at random points leave no slot busy; a prompt
longer than a slot's context is a 400; a slot that fails ends its own request only; a
multi-turn chat evaluates only the new turn (``cached_tokens``).
"""

from __future__ import annotations

import concurrent.futures
import json
import random

import httpx
import openai
import pytest
import yaml

from localai_runtime.backends.llama_cpp.engine import slot_sampling
from tests.conftest import REPO, live_server, model_pool, wait_until

SLOTS = 16
MODELS = ["demo-batch", "gemma-batch"]


def registration(model: str, model_file: str, **settings) -> dict:
    return {"registration": {"model": model, "operations": ["createChatCompletion", "createCompletion"]},
            "local_settings": {"backend": "llama-cpp", "model_file": model_file, "threads": 2, "context_size": 512,
                               "parallel": SLOTS, "preload": True, **settings}}


@pytest.fixture(scope="module")
def batching(built_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("batching-configs")
    example = yaml.safe_load((REPO / "configs" / "examples" / "gemma3-270m.yaml").read_text())[0]
    (directory / "batching.yaml").write_text(yaml.safe_dump_all([
        registration("demo-batch", "builtin:demo"),
        registration("gemma-batch", example["local_settings"]["model_file"],
                     template=example["local_settings"]["template"])]))
    with live_server(built_spec, configs_dir=directory, queue_size=64) as live:
        yield live


def engine_of(live, model: str):
    return model_pool(live, "createChatCompletion", model).instances[0].engine


def idle(live, model: str) -> bool:
    engine = engine_of(live, model)
    return engine.busy_slots == 0 and not engine._waiting


def mixed_request(i: int) -> dict:
    """Request ``i`` of a mixed load: lengths from 4 to 48 tokens, every third with a stop
    sequence, every fourth under a JSON grammar (those have no stop sequence), every other seeded
    at temperature 0.9."""
    body: dict = {"messages": [{"role": "user", "content": f"Tell me about the number {i}."}],
                  "max_tokens": 4 + (i * 7) % 45, "stream": True, "stream_options": {"include_usage": True}}
    if i % 2:
        body.update(temperature=0.9, seed=i)
    else:
        body.update(temperature=0)
    if i % 3 == 0 and i % 4 != 1:
        body["stop"] = ["e", "\n"]
    if i % 4 == 1:
        body["response_format"] = {"type": "json_object"}
        body["max_tokens"] = 200
    else:
        body["extra_body"] = {"x-localai-extensions": {"ignore_eos": True}}
    return body


def streamed(client: openai.OpenAI, model: str, body: dict) -> tuple[str, str | None, object]:
    body = dict(body)
    extra = body.pop("extra_body", None)
    text, finish, usage = "", None, None
    for chunk in client.chat.completions.create(model=model, extra_body=extra, **body):
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, finish, usage


@pytest.mark.parametrize("model", MODELS)
def test_sixteen_mixed_streams_complete_correctly(batching, model):
    client = batching.client(timeout=300)
    bodies = [mixed_request(i) for i in range(SLOTS)]
    with concurrent.futures.ThreadPoolExecutor(SLOTS) as pool:
        results = list(pool.map(lambda body: streamed(client, model, body), bodies))
    for i, (body, (text, finish, usage)) in enumerate(zip(bodies, results, strict=True)):
        assert usage is not None and usage.completion_tokens <= body["max_tokens"], i
        if "stop" in body:
            assert "e" not in text and "\n" not in text, (i, text)
        if "response_format" in body and finish == "stop":
            json.loads(text)  # a grammar-bound answer that ended is whole JSON
        elif "stop" not in body and "response_format" not in body:  # ignore_eos: exactly the budget
            assert (finish, usage.completion_tokens) == ("length", body["max_tokens"]), i
    # Whether a greedy request gives the same text alone is measured, not asserted: llama.cpp does
    # not promise it (bench/determinism.py, README "Determinism").
    wait_until(lambda: idle(batching, model), "every slot is free again")


@pytest.mark.parametrize("model", MODELS)
def test_fifty_streams_cut_at_random_points_leave_no_slot_busy(batching, model):
    rng = random.Random(10)

    def cut(i: int) -> int:
        body = {"model": model, "messages": [{"role": "user", "content": f"Story {i}"}], "max_tokens": 64,
                "stream": True, "temperature": 0.8, "seed": i, "x-localai-extensions": {"ignore_eos": True}}
        lines = rng.randint(0, 40)
        with httpx.Client(base_url=batching.url, timeout=60) as http, \
                http.stream("POST", "/v1/chat/completions", json=body) as response:
            for count, _line in enumerate(response.iter_lines(), 1):
                if count >= lines:
                    break
            return response.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(cut, range(50)))
    assert set(statuses) <= {200}
    wait_until(lambda: idle(batching, model), "every cut stream freed its slot", timeout=60)
    completion = batching.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=8, temperature=0,
        extra_body={"x-localai-extensions": {"ignore_eos": True}})
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 8


def test_a_prompt_longer_than_a_slot_is_refused(batching):
    with pytest.raises(openai.BadRequestError) as refused:
        batching.client().completions.create(model="demo-batch", prompt="word " * 600, max_tokens=4)
    assert refused.value.code == "context_length_exceeded" and "512" in str(refused.value)


def test_a_failing_slot_ends_its_own_request_and_the_others_run_on(batching, monkeypatch):
    original = slot_sampling.SlotSampler.sample

    def sample(self, ctx, index):
        if self._top == 3:  # the marked request: its sampler breaks after a few tokens
            self.failures = getattr(self, "failures", 0) + 1
            if self.failures > 3:
                raise slot_sampling.GrammarDeadEnd("the grammar allows no token to continue the output")
        return original(self, ctx, index)

    monkeypatch.setattr(slot_sampling.SlotSampler, "sample", sample)
    client = batching.client(timeout=120)
    healthy = {"messages": [{"role": "user", "content": "go"}], "max_tokens": 40, "temperature": 0,
               "extra_body": {"x-localai-extensions": {"ignore_eos": True}}}

    def failing() -> str:
        try:
            streamed(client, "demo-batch", {**healthy, "stream": True, "logprobs": True, "top_logprobs": 3})
        except openai.APIError as exc:
            return str(exc)
        return "no error"

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        others = [pool.submit(streamed, client, "demo-batch", {**healthy, "stream": True}) for _ in range(3)]
        failure = pool.submit(failing)
        assert "grammar allows no token" in failure.result()
        for other in others:
            assert other.result()[1] == "length"
    wait_until(lambda: idle(batching, "demo-batch"), "every slot is free again")


def test_a_conversation_evaluates_only_the_new_turn(batching):
    client = batching.client()
    messages = [{"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model="gemma-batch", messages=messages, max_tokens=12, temperature=0)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And another one?"}]
    second = client.chat.completions.create(model="gemma-batch", messages=messages, max_tokens=12, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens <= cached < second.usage.prompt_tokens
