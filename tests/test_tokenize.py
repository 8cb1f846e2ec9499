"""Tokenize and detokenize (vLLM's /tokenize and /detokenize) through the official openai client:
counts equal to the prompt tokens of the same chat or completion request, round trips, token
strings, errors, and the served document's response schemas; on the demo model (shared server),
on the real Gemma 3 270M, and on gpt4all (what it can do honestly: no detokenize, no token strings).
"""

from __future__ import annotations

import re
import textwrap

import httpx
import openai
import pytest

from tests.conftest import gemma_server

GEMMA = "gemma3-270m"
TEXTS = ["Hello, world! The quick brown fox.", "héllo wörld — 東京 🚀"]
MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALLED = [*MESSAGES,
          {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
              "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
          {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"}]
GPT4ALL_TOKENIZE = """
# gpt4all tokenizes by evaluating the prompt: no detokenize, no token strings, no add_special_tokens.
registration: {model: demo-gpt4all, operations: [tokenize]}
local_settings: {backend: gpt4all, model_file: builtin:demo, threads: 2, context_size: 2048}
---
registration: {model: gpt4all-detokenize, operations: [detokenize]}
local_settings: {backend: gpt4all, model_file: builtin:demo, threads: 2, context_size: 2048}
"""


@pytest.fixture(scope="module")
def real(built_spec, tmp_path_factory):
    """Gemma (its example registrations, tokenize included) beside gpt4all on the demo model."""
    directory = tmp_path_factory.mktemp("configs")
    (directory / "gpt4all-tokenize.yaml").write_text(textwrap.dedent(GPT4ALL_TOKENIZE))
    with gemma_server(built_spec, directory, "demo-gpt4all.yaml") as live:
        yield live


def post(live, path: str, body: dict) -> dict:
    """POST to a path outside /v1 with the official client (its errors raise its exceptions)."""
    return live.client().post(f"{live.url}{path}", body=body, cast_to=httpx.Response).json()


def tokenize(live, **body) -> dict:
    return post(live, "/tokenize", body)


def detokenize(live, model: str, tokens: list[int]) -> str:
    return post(live, "/detokenize", {"model": model, "tokens": tokens})["prompt"]


def vocabulary_text(strings: list[str]) -> str:
    """The text that SentencePiece vocabulary strings stand for ("▁" a space, "<0xE2>" a byte)."""
    data = b"".join(bytes([int(s[3:5], 16)]) if re.fullmatch(r"<0x[0-9A-F]{2}>", s) else s.replace("▁", " ").encode()
                    for s in strings)
    return data.decode()


def chat_prompt_tokens(live, model: str, messages: list[dict], **kwargs) -> int:
    completion = live.client().chat.completions.create(model=model, messages=messages, max_tokens=1, **kwargs)
    return completion.usage.prompt_tokens


# -- the demo model (llama-cpp), on the shared server ----------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_a_prompt_counts_as_a_completion_does_and_round_trips(server, response_schemas, text):
    answer = tokenize(server, model="demo", prompt=text)
    response_schemas.check("LocalAITokenizeResponse", answer)
    assert set(answer) == {"count", "max_model_len", "tokens"}
    assert answer["count"] == len(answer["tokens"]) and answer["max_model_len"] == 2048
    completion = server.client().completions.create(model="demo", prompt=text, max_tokens=1)
    assert answer["count"] == completion.usage.prompt_tokens
    bare = tokenize(server, model="demo", prompt=text, add_special_tokens=False)
    assert answer["tokens"] == [1, *bare["tokens"]]  # the model's BOS, then the text
    back = post(server, "/detokenize", {"model": "demo", "tokens": bare["tokens"]})
    response_schemas.check("LocalAIDetokenizeResponse", back)
    assert back == {"prompt": text}
    assert detokenize(server, "demo", answer["tokens"]).startswith("<s>")  # special tokens as their text


@pytest.mark.parametrize("tools", [None, [WEATHER]], ids=["plain", "tools"])
@pytest.mark.parametrize("messages", [MESSAGES, CALLED], ids=["question", "tool-result"])
def test_messages_count_as_the_chat_completion_does(server, response_schemas, tools, messages):
    extra = {"tools": tools} if tools else {}
    answer = tokenize(server, model="demo", messages=messages, **extra)
    response_schemas.check("LocalAITokenizeResponse", answer)
    assert answer["count"] == chat_prompt_tokens(server, "demo", messages, **extra)
    if tools:  # the tools are in the prompt (described in the system message, as chat renders them)
        assert answer["count"] > tokenize(server, model="demo", messages=messages)["count"]
        assert "get_weather" in detokenize(server, "demo", answer["tokens"])
    # Without the generation prompt: the same prompt without the assistant turn's opening.
    opened = tokenize(server, model="demo", messages=messages, add_generation_prompt=False, **extra)
    assert opened["tokens"] == answer["tokens"][:opened["count"]] and opened["count"] < answer["count"]
    assert detokenize(server, "demo", answer["tokens"]).endswith("<|im_start|> assistant\n")
    # add_special_tokens adds the BOS on top of the template's own, as vLLM does.
    doubled = tokenize(server, model="demo", messages=messages, add_special_tokens=True, **extra)
    assert doubled["tokens"] == [1, *answer["tokens"]]


def test_token_strings_are_the_vocabulary_strings(server, response_schemas):
    text = TEXTS[1]
    answer = tokenize(server, model="demo", prompt=text, return_token_strs=True)
    response_schemas.check("LocalAITokenizeResponse", answer)
    strings = answer["token_strs"]
    assert len(strings) == answer["count"] and strings[0] == "<s>"
    assert "<0xC3>" in strings  # "ö" is two byte tokens in the demo vocabulary
    # SentencePiece writes a space before the first word ("▁h"); the detokenizer drops it.
    assert vocabulary_text(strings[1:]) == " " + text


def test_mistakes_are_400s_naming_the_field(server):
    with pytest.raises(openai.BadRequestError) as raised:
        detokenize(server, "demo", [1, 465])  # the demo vocabulary has 465 tokens
    assert raised.value.param == "tokens" and "464" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        detokenize(server, "demo", [-1])
    assert raised.value.param == "tokens"
    with pytest.raises(openai.BadRequestError) as raised:
        tokenize(server, model="demo", prompt=5)
    assert raised.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as raised:
        tokenize(server, model="demo", prompt="x", tools=[WEATHER])
    assert raised.value.param == "tools"
    with pytest.raises(openai.BadRequestError):
        tokenize(server, model="demo", prompt="x", messages=MESSAGES)  # one form or the other
    with pytest.raises(openai.BadRequestError) as raised:
        tokenize(server, model="demo", messages=MESSAGES, tools=[{"type": "function", "function": {
            "name": "f", "parameters": {"type": "nonsense"}}}])
    assert raised.value.param == "tools[0].function.parameters"
    with pytest.raises(openai.BadRequestError) as raised:
        tokenize(server, model="demo", prompt="x", add_bos=True)
    assert (raised.value.param, raised.value.code) == ("add_bos", "unknown_parameter")


def test_unknown_model_is_404_and_a_model_without_tokenize_400(server):
    with pytest.raises(openai.NotFoundError) as missing:
        tokenize(server, model="gpt-4o", prompt="x")
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.BadRequestError) as wrong:
        detokenize(server, "demo-gpt4all", [1])
    assert (wrong.value.code, wrong.value.param) == ("model_not_supported", "model")
    assert "does not serve detokenize" in wrong.value.message


def test_a_long_prompt_is_counted_not_refused(server):
    answer = tokenize(server, model="demo", prompt="word " * 3000)
    assert answer["count"] > answer["max_model_len"] == 2048


# -- Gemma 3 270M ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_gemma_prompt_counts_and_round_trips(real, response_schemas, text):
    answer = tokenize(real, model=GEMMA, prompt=text, return_token_strs=True)
    response_schemas.check("LocalAITokenizeResponse", answer)
    assert answer["max_model_len"] == 4096 and answer["token_strs"][0] == "<bos>"
    completion = real.client().completions.create(model=GEMMA, prompt=text, max_tokens=1)
    assert answer["count"] == completion.usage.prompt_tokens
    assert vocabulary_text(answer["token_strs"][1:]) == text  # no space prefix in Gemma's vocabulary
    bare = tokenize(real, model=GEMMA, prompt=text, add_special_tokens=False)
    assert bare["tokens"] == answer["tokens"][1:]
    assert detokenize(real, GEMMA, bare["tokens"]) == text
    assert detokenize(real, GEMMA, answer["tokens"]) == "<bos>" + text


@pytest.mark.parametrize("tools", [None, [WEATHER]], ids=["plain", "tools"])
def test_gemma_messages_count_as_the_chat_completion_does(real, tools):
    extra = {"tools": tools} if tools else {}
    for messages in ([MESSAGES, CALLED] if tools else [MESSAGES]):
        answer = tokenize(real, model=GEMMA, messages=messages, **extra)
        assert answer["count"] == chat_prompt_tokens(real, GEMMA, messages, **extra)
        text = detokenize(real, GEMMA, answer["tokens"])
        assert text.startswith("<bos><start_of_turn>user\nAnswer briefly.") and text.endswith("<start_of_turn>model\n")
        assert ("get_weather" in text) == bool(tools)
        opened = tokenize(real, model=GEMMA, messages=messages, add_generation_prompt=False, **extra)
        assert detokenize(real, GEMMA, opened["tokens"]) == text.removesuffix("<start_of_turn>model\n")


# -- gpt4all: tokenize, as it evaluates prompts; nothing it cannot do --------------------------------


def test_gpt4all_counts_as_it_generates(real, server):
    for text in TEXTS:
        answer = tokenize(real, model="demo-gpt4all", prompt=text)
        assert answer["count"] == real.client().completions.create(
            model="demo-gpt4all", prompt=text, max_tokens=1).usage.prompt_tokens
        assert answer["tokens"] == tokenize(server, model="demo", prompt=text)["tokens"]  # the same GGUF
    answer = tokenize(real, model="demo-gpt4all", messages=MESSAGES)
    assert answer["count"] == chat_prompt_tokens(real, "demo-gpt4all", MESSAGES)
    assert answer["count"] > tokenize(real, model="demo-gpt4all", messages=MESSAGES, add_generation_prompt=False)["count"]


@pytest.mark.parametrize("field", [{"return_token_strs": True}, {"add_special_tokens": False}])
def test_gpt4all_refuses_what_it_cannot_honour(real, field):
    with pytest.raises(openai.BadRequestError) as raised:
        tokenize(real, model="demo-gpt4all", prompt="hello", **field)
    assert (raised.value.code, raised.value.param) == ("unsupported_parameter", next(iter(field)))
    with pytest.raises(openai.BadRequestError) as raised:
        tokenize(real, model="demo-gpt4all", messages=MESSAGES, tools=[WEATHER])
    assert (raised.value.code, raised.value.param) == ("unsupported_parameter", "tools")


def test_gpt4all_cannot_detokenize(real):
    with real.http() as http:
        listed = {r["model"]: r for r in http.get("/v1/localai/registrations").json()["data"]}
    assert listed["gpt4all-detokenize"]["status"] == "unavailable"
    assert "backend gpt4all cannot serve detokenize" in listed["gpt4all-detokenize"]["problem"]
    with pytest.raises(openai.BadRequestError) as raised:  # it honours none of the operation's fields
        detokenize(real, "gpt4all-detokenize", [1])
    assert (raised.value.code, raised.value.param) == ("unsupported_parameter", "tokens")
