"""Regression tests for the hardening issue: client patterns that could freeze the server, an
instance lent twice, a queue place kept by a client that left, and the llama-cpp adapter's
edge cases. Each is written against what a client or operator sees, on a real server with the
demo GGUF (llama-cpp-python) and the echo backend beside it.
"""

from __future__ import annotations

import concurrent.futures
import json
import textwrap

import httpx
import openai
import pytest

from localai_runtime.errors import SpecError
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.conftest import demo_and_echo_server, hold_instances, wait_until
from tests.fake_backend import EchoInstance, registry

ECHO_CONFIGS = """
    registration: {model: echo, operations: [createChatCompletion, createCompletion]}
    local_settings: {backend: echo}
    ---
    registration: {model: slow, operations: [createChatCompletion, createCompletion]}
    local_settings: {backend: echo, delay_s: 0.05, parallel: 1}
    ---
    registration: {model: trimmed, operations: [createCompletion]}
    local_settings: {backend: echo}
    request_defaults:
      x-localai-extensions: {trimstrings: ["\\\\{"]}
    """
MESSAGES = [{"role": "user", "content": "hi"}]
EVIL = "(.*.*)*[^\\s\\S]"  # catastrophic backtracking in a backtracking engine; matches nothing


@pytest.fixture(scope="module")
def live(built_spec, tmp_path_factory):
    with demo_and_echo_server(built_spec, tmp_path_factory.mktemp("configs"), ECHO_CONFIGS, queue_size=1) as server:
        yield server


def readyz(live) -> dict:
    with live.http() as http:
        return http.get("/readyz").json()


# -- client regular expressions ------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_backtracking_pattern_cannot_freeze_the_server(live, stream):
    body = {"model": "demo", "messages": MESSAGES, "max_tokens": 600, "seed": 3, "temperature": 0, "stream": stream,
            "x-localai-extensions": {"ignore_eos": True}}
    evil = {**body, "x-localai-extensions": {"ignore_eos": True, "cutstrings": [EVIL]}}
    with concurrent.futures.ThreadPoolExecutor(1) as pool, httpx.Client(base_url=live.url, timeout=60) as http:
        answer = pool.submit(http.post, "/v1/chat/completions", json=evil)
        assert http.get("/healthz", timeout=30).status_code == 200  # the event loop answers meanwhile
        cut = answer.result()
        plain = http.post("/v1/chat/completions", json=body)
    assert cut.status_code == plain.status_code == 200, cut.text
    if stream:
        texts = [_streamed_text(response.text) for response in (cut, plain)]
    else:
        texts = [response.json()["choices"][0]["message"]["content"] for response in (cut, plain)]
    assert texts[0] == texts[1] and len(texts[0]) > 100  # the pattern matches nothing: nothing cut


def _streamed_text(text: str) -> str:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in map(json.loads, events[:-1]) if c["choices"])


@pytest.mark.parametrize("key", ["cutstrings", "trimstrings"])
@pytest.mark.parametrize("pattern", ["(a)\\1", "(?=a)b", "(?<!a)b", "x{1001}", "(", "[z-a]"])
def test_a_pattern_re2_refuses_is_400_naming_it_before_any_generation(live, key, pattern):
    before = readyz(live)["generations_total"]
    with pytest.raises(openai.BadRequestError) as raised:
        live.client().chat.completions.create(
            model="echo", messages=MESSAGES, extra_body={"x-localai-extensions": {key: ["ok", pattern]}})
    assert raised.value.param == f"x-localai-extensions.{key}[1]"
    assert "RE2" in raised.value.message
    assert readyz(live)["generations_total"] == before


@pytest.mark.parametrize("stream", [False, True])
def test_patterns_that_compile_alone_also_run_as_trimstrings(live, stream):
    patterns = ["(?i)\\{", "(?P<a>\\})"]  # flags and a named group: broke the old two-sided wrapper
    response = live.client().completions.create(
        model="echo", prompt="x", stream=stream, extra_body={"x-localai-extensions": {"trimstrings": patterns}})
    text = "".join(c.choices[0].text for c in response if c.choices) if stream else response.choices[0].text
    echoed = json.loads("{" + text + "}")  # exactly one brace trimmed at each end
    assert echoed["x-localai-extensions"] == {"trimstrings": patterns}


def test_registration_default_patterns_are_checked_at_start_up_and_applied(live, built_spec, tmp_path):
    text = live.client().completions.create(model="trimmed", prompt="x").choices[0].text
    assert text.startswith('"') and text.endswith("}")  # the default trimmed the leading brace only
    (tmp_path / "bad.yaml").write_text(textwrap.dedent("""
        registration: {model: bad, operations: [createCompletion]}
        local_settings: {backend: echo}
        request_overrides:
          x-localai-extensions: {cutstrings: ["fine", "(?<=lookbehind)"]}
        """))
    with pytest.raises(SpecError, match=r"bad\.yaml#0 \(model bad\): request_overrides\.x-localai-extensions"
                                        r"\.cutstrings\[1\]: '\(\?<=lookbehind\)' is not a regular expression RE2"):
        load_registrations(tmp_path, RequestSchemas(built_spec), registry())


def test_streamed_text_offsets_with_cutstrings_match_the_plain_answer(live):
    body = {"model": "demo", "prompt": "Once upon", "max_tokens": 8, "seed": 1, "temperature": 0, "logprobs": 1,
            "x-localai-extensions": {"cutstrings": ["^."]}}
    with live.http() as http:
        plain = http.post("/v1/completions", json=body).json()["choices"][0]
        streamed = http.post("/v1/completions", json={**body, "stream": True})
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    offsets = [o for c in chunks for choice in c["choices"] if choice["logprobs"]
               for o in choice["logprobs"]["text_offset"]]
    assert offsets == plain["logprobs"]["text_offset"] and offsets[0] == 0
    assert "".join(choice["text"] for c in chunks for choice in c["choices"]) == plain["text"]


# -- an instance is lent to one generation at a time -----------------------------------------------

def test_a_non_streamed_generation_cut_short_keeps_its_instance_until_its_thread_ends(live):
    before = EchoInstance.overlaps
    for _ in range(3):
        # "user" (metadata) makes the echo long: about 60 pieces, 50 ms apart
        body = {"model": "slow", "messages": MESSAGES, "user": "u" * 400}
        with httpx.Client(base_url=live.url, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
            http.post("/v1/chat/completions", json=body)
        # at once, while the cancelled generation's thread may still be running on the instance
        assert live.client().chat.completions.create(model="slow", messages=MESSAGES).choices
    assert EchoInstance.overlaps == before
    wait_until(lambda: readyz(live)["active_generations"] == 0, "the generations to end")


# -- a client that leaves before its answer begins ------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_leaves_the_queue_gives_its_place_up_and_never_runs(live, stream):
    body = {"model": "slow", "messages": MESSAGES, "stream": stream}
    with concurrent.futures.ThreadPoolExecutor(1) as executor, httpx.Client(base_url=live.url, timeout=60) as http:
        with hold_instances(live, "createChatCompletion", "slow") as pool:
            before = readyz(live)["generations_total"]
            with httpx.Client(base_url=live.url, timeout=0.5) as leaving, pytest.raises(httpx.ReadTimeout):
                leaving.post("/v1/chat/completions", json=body)  # queued (queue_size 1), then gone
            wait_until(lambda: pool.waiting == 0, "the queue place to be given up")
            queued = executor.submit(http.post, "/v1/chat/completions", json=body)
            wait_until(lambda: pool.waiting == 1 or queued.done(), "the next request to queue")
            assert not queued.done(), queued.result().text  # queued, not refused with 429
        assert queued.result().status_code == 200
    assert readyz(live)["generations_total"] == before + 1  # only the request that stayed ran


# -- JSON numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "floats"), [
    ("/v1/chat/completions", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 2.0, "max_completion_tokens": 3.0,
                              "n": 2.0, "seed": 7.0, "x-localai-extensions": {"top_k": 5.0, "repeat_last_n": 8.0}}),
    ("/v1/completions", {"prompt": [1.0, 72.0, 105.0], "logprobs": 2.0, "max_tokens": 3.0, "n": 2.0, "seed": 7.0}),
])
def test_integer_valued_floats_are_served_as_integers(live, path, floats):
    """JSON Schema counts 2.0 as an integer: such values are served exactly like 2 (they answered 500)."""

    def as_ints(value):
        if isinstance(value, float):
            return int(value)
        if isinstance(value, dict):
            return {k: as_ints(v) for k, v in value.items()}
        return [as_ints(v) for v in value] if isinstance(value, list) else value

    with live.http() as http:
        answers = [http.post(path, json={"model": "demo", "temperature": 0, **body}) for body in (floats, as_ints(floats))]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    first, second = (a.json()["choices"] for a in answers)
    # The same texts and tokens; logprobs to float noise: the second request's prompt comes from
    # the engine's prefix cache, and a batch of another shape sums in another order (README).
    assert len(first) == 2 and _same(first, second)


def _same(a, b) -> bool:
    """Equal, floats within 1e-3."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-3
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b
