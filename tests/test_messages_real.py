"""Anthropic's Messages API on a real model (Gemma 3 270M, ``configs/examples/gemma3-270m.yaml``),
asked with the official ``anthropic`` SDK: forced tools on chat's grammar engine, a tool_result
round trip, streamed tool input, stop sequences, and the same prompt as chat completions."""

from __future__ import annotations

import jsonschema
import pytest

from tests.conftest import ResponseSchemas, gemma_server

GEMMA = "gemma3-270m"
WEATHER = {"name": "get_weather", "description": "The current weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"},
                                                             "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                            "required": ["city"], "additionalProperties": False}}
TIME = {"name": "get_time", "description": "The current time in a time zone",
        "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
T0 = {"temperature": 0, "top_k": 1}  # the SDK leaves sampling fields to extra_body; the document has them


@pytest.fixture(scope="module")
def real(built_spec, tmp_path_factory):
    with gemma_server(built_spec, tmp_path_factory.mktemp("configs")) as live:
        yield live


@pytest.fixture(scope="module")
def client(real):
    import anthropic

    return anthropic.Anthropic(base_url=real.url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def schemas(real) -> ResponseSchemas:
    return ResponseSchemas.served_by(real, "/anthropic/openapi.json")


def test_a_message_is_the_chat_completion_of_the_same_request(client, real, schemas):
    system, ask = "Answer briefly.", [{"role": "user", "content": "What is the capital of France?"}]
    message = client.messages.create(model=GEMMA, max_tokens=20, extra_body=T0, system=system, messages=ask)
    chat = real.client().chat.completions.create(
        model=GEMMA, max_tokens=20, temperature=0, messages=[{"role": "system", "content": system}, *ask],
        extra_body={"x-localai-extensions": {"top_k": 1}})
    assert message.content[0].text == chat.choices[0].message.content
    assert message.usage.input_tokens + message.usage.cache_read_input_tokens == chat.usage.prompt_tokens
    assert message.usage.output_tokens == chat.usage.completion_tokens
    assert message.stop_reason == {"stop": "end_turn", "length": "max_tokens"}[chat.choices[0].finish_reason]
    schemas.check("Message", message.model_dump(mode="json"))


def test_stop_sequences_end_the_message_and_are_named(client):
    ask = [{"role": "user", "content": "Write a sentence about the sea."}]
    whole = client.messages.create(model=GEMMA, max_tokens=30, extra_body=T0, messages=ask).content[0].text
    words = whole.split()
    assert len(words) > 3, whole
    stop = words[2]
    stopped = client.messages.create(model=GEMMA, max_tokens=30, extra_body=T0, stop_sequences=[stop], messages=ask)
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == stop
    assert stopped.content[0].text == whole[:whole.index(stop)]
    counted = client.messages.count_tokens(model=GEMMA, messages=ask)
    assert stopped.usage.input_tokens + stopped.usage.cache_read_input_tokens == counted.input_tokens


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_a_forced_tool_is_called_with_input_that_follows_its_schema(client, schemas, choice):
    message = client.messages.create(model=GEMMA, max_tokens=200, extra_body=T0, messages=ASK_WEATHER,
                                     tools=[WEATHER, TIME], tool_choice=choice)
    assert message.stop_reason == "tool_use"
    [call] = [block for block in message.content if block.type == "tool_use"]
    assert call.id.startswith("toolu_") and call.name in {"get_weather", "get_time"}
    jsonschema.validate(call.input, (WEATHER if call.name == "get_weather" else TIME)["input_schema"])
    if choice["type"] == "tool":
        assert call.name == "get_weather" and "Paris" in call.input["city"]
    schemas.check("Message", message.model_dump(mode="json"))


def test_none_calls_no_tool(client):
    message = client.messages.create(model=GEMMA, max_tokens=30, extra_body=T0, messages=ASK_WEATHER,
                                     tools=[WEATHER], tool_choice={"type": "none"})
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert all(block.type == "text" for block in message.content)


def test_a_tool_result_round_trip(client):
    first = client.messages.create(model=GEMMA, max_tokens=200, extra_body=T0, messages=ASK_WEATHER,
                                   tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    [call] = [block for block in first.content if block.type == "tool_use"]
    history = [*ASK_WEATHER, {"role": "assistant", "content": [block.model_dump(exclude_none=True)
                                                               for block in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                             "content": [{"type": "text", "text": "Sunny, 21 degrees"}]}]}]
    final = client.messages.create(model=GEMMA, max_tokens=40, extra_body=T0, messages=history, tools=[WEATHER],
                                   tool_choice={"type": "none"})
    shorter = [*history[:2], {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                                           "content": [{"type": "text", "text": "-"}]}]}]
    without = client.messages.count_tokens(model=GEMMA, messages=shorter, tools=[WEATHER],  # (a prefill is refused)
                                           tool_choice={"type": "none"})
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens > without.input_tokens  # rendered
    assert final.stop_reason in ("end_turn", "max_tokens") and all(block.type == "text" for block in final.content)
    assert final.usage.cache_read_input_tokens > 0  # the conversation's prefix was reused


def test_a_streamed_tool_call_matches_the_whole_answer(client, real, schemas):
    request = {"model": GEMMA, "max_tokens": 200, "extra_body": T0, "messages": ASK_WEATHER, "tools": [WEATHER],
               "tool_choice": {"type": "tool", "name": "get_weather"}}
    whole = client.messages.create(**request)
    with client.messages.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and final.content[-1].type == "tool_use"
    assert final.content[-1].input == whole.content[-1].input
    deltas = [event.delta.partial_json for event in events
              if event.type == "content_block_delta" and event.delta.type == "input_json_delta"]
    assert deltas and "".join(deltas).replace(" ", "") == __import__("json").dumps(
        whole.content[-1].input).replace(" ", "")
    for event in events:
        if event.type in ("message_start", "content_block_start", "content_block_delta", "content_block_stop",
                          "message_delta", "message_stop"):
            schemas.check("MessageStreamEvent", event.model_dump(mode="json"))
