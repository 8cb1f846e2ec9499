"""Tool calling and structured output on a real model: Gemma 3 270M (Q4_K_M) from the package
index, served through llama-cpp-python with the example registration
(``configs/examples/gemma3-270m.yaml``), and asked with the official openai client.

The model is a small base model without a chat template or a tool-call format of its own: the
registration supplies Gemma's turn format, tools are taught in a system message, and calls are
generated under the call grammar, so their arguments always parse and follow the schema. Mistakes
in tools and tool messages are checked on the fast demo model beside it.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.conftest import gemma_server, live_server

GEMMA = "gemma3-270m"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The current time in a time zone",
    "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
MARKUP = ("<tool_call>", "</tool_call>")  # the frame of a call: never part of content


@pytest.fixture(scope="module")
def real(built_spec, tmp_path_factory):
    with gemma_server(built_spec, tmp_path_factory.mktemp("configs"), "demo-llama-cpp.yaml", "demo-gpt4all.yaml") as live:
        yield live


def arguments_of(call, tool) -> dict:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, tool["function"]["parameters"])
    return arguments


def test_the_real_model_answers(real):
    completion = real.client().completions.create(
        model=GEMMA, prompt="Q: What is the capital of France?\nA:", max_tokens=12, temperature=0)
    assert "Paris" in completion.choices[0].text


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_forced_call_parses_and_follows_the_schema(real, choice):
    completion = real.client().chat.completions.create(
        model=GEMMA, messages=ASK_WEATHER, tools=[WEATHER, TIME], tool_choice=choice, temperature=0, seed=1)
    message, finish = completion.choices[0].message, completion.choices[0].finish_reason
    assert finish == "tool_calls" and message.content is None
    assert len(message.tool_calls) == 1  # the generic format makes one call a turn
    call = message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in {"get_weather", "get_time"}
    tool = WEATHER if call.function.name == "get_weather" else TIME
    arguments = arguments_of(call, tool)
    if call.function.name == "get_weather":
        assert "Paris" in arguments["city"]


def test_a_named_choice_is_obeyed_even_when_the_prompt_asks_for_another_tool(real):
    completion = real.client().chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": "What time is it in Tokyo?"}], tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0)
    [call] = completion.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    arguments_of(call, WEATHER)


def test_auto_calls_when_the_model_starts_a_call_and_keeps_markup_out_of_content(real):
    completion = real.client().chat.completions.create(
        model=GEMMA, messages=ASK_WEATHER, tools=[WEATHER], temperature=0, seed=1)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and arguments_of(call, WEATHER)["city"]
    assert not any(marker in (choice.message.content or "") for marker in MARKUP)


def test_none_returns_no_call_and_no_markup(real):
    completion = real.client().chat.completions.create(
        model=GEMMA, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=60)
    choice = completion.choices[0]
    assert choice.message.tool_calls is None and choice.finish_reason in ("stop", "length")
    assert not any(marker in (choice.message.content or "") for marker in MARKUP)


@pytest.mark.parametrize("choice", ["required", "auto"])
def test_streamed_calls_match_the_whole_answer_and_conform(real, response_schemas, choice):
    request = {"model": GEMMA, "messages": ASK_WEATHER, "tools": [WEATHER], "tool_choice": choice,
               "temperature": 0, "seed": 7}
    client = real.client()
    whole = client.chat.completions.create(**request).choices[0].message.tool_calls
    with real.http() as http:
        raw = http.post("/v1/chat/completions", json={**request, "stream": True})
    events = [line[6:] for line in raw.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    for chunk in chunks:
        response_schemas.check("CreateChatCompletionStreamResponse", chunk)
    deltas = [d for c in chunks for choice_ in c["choices"] for d in choice_["delta"].get("tool_calls") or []]
    first, rest = deltas[0], deltas[1:]
    assert first["index"] == 0 and first["type"] == "function" and first["id"].startswith("call_")
    assert first["function"]["name"] == "get_weather"
    assert all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest)
    streamed = first["function"]["arguments"] + "".join(d["function"]["arguments"] for d in rest)
    assert streamed == whole[0].function.arguments  # byte for byte, same seed
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert not any(marker in content for marker in MARKUP)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"


def test_a_two_turn_tool_loop_renders_the_call_and_its_result(real):
    client = real.client()
    first = client.chat.completions.create(model=GEMMA, messages=ASK_WEATHER, tools=[WEATHER],
                                           tool_choice="required", temperature=0)
    call = first.choices[0].message.tool_calls[0]
    history = [*ASK_WEATHER, first.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 degrees"}]
    final = client.chat.completions.create(model=GEMMA, messages=history, tools=[WEATHER], tool_choice="none",
                                           temperature=0, max_tokens=40)
    without_result = client.chat.completions.create(model=GEMMA, messages=history[:2], tools=[WEATHER],
                                                    tool_choice="none", temperature=0, max_tokens=1)
    assert final.usage.prompt_tokens > without_result.usage.prompt_tokens  # the result was rendered
    assert final.choices[0].message.tool_calls is None
    assert not any(marker in (final.choices[0].message.content or "") for marker in MARKUP)


def test_legacy_functions_answer_with_function_call(real):
    completion = real.client().chat.completions.create(
        model=GEMMA, messages=ASK_WEATHER, functions=[WEATHER["function"]], function_call={"name": "get_weather"},
        temperature=0)
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.tool_calls is None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments)["city"]


@pytest.mark.parametrize("strict", [True, False])
def test_structured_output_parses_and_validates(real, strict):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    completion = real.client().chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": "Name a city in France as JSON."}], temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": strict}})
    jsonschema.validate(json.loads(completion.choices[0].message.content), schema)
    assert completion.choices[0].finish_reason == "stop"


def test_json_object_and_tools_combined(real):
    client = real.client()
    plain = client.chat.completions.create(
        model=GEMMA, messages=[{"role": "user", "content": 'Reply with a JSON object like {"city": "..."}.'}],
        temperature=0, response_format={"type": "json_object"})
    assert isinstance(json.loads(plain.choices[0].message.content), dict)
    combined = client.chat.completions.create(
        model=GEMMA, messages=ASK_WEATHER, tools=[WEATHER], temperature=0, response_format={"type": "json_object"})
    message = combined.choices[0].message
    if message.tool_calls:  # a call, or a JSON answer: both parse
        arguments_of(message.tool_calls[0], WEATHER)
    else:
        assert isinstance(json.loads(message.content), dict)


# -- bad input: 400s naming the field, on the fast demo model ---------------------------------------

@pytest.mark.parametrize(("change", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]},
     "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "messages": [*ASK_WEATHER, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
     "messages[1].tool_call_id"),
    ({"tools": [WEATHER], "messages": [*ASK_WEATHER, {"role": "assistant", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{city: Paris"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
])
def test_mistakes_in_tools_are_400_naming_the_field(real, change, param):
    with real.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "demo", "messages": ASK_WEATHER, **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_gpt4all_never_ignores_tools_silently(real, built_spec, tmp_path):
    # The shipped demo-gpt4all registration drops what gpt4all cannot honour, and says so.
    raw = real.client().chat.completions.with_raw_response.create(
        model="demo-gpt4all", messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required", max_tokens=4)
    assert raw.headers["x-localai-dropped-fields"] == "tool_choice, tools"
    assert raw.parse().choices[0].message.tool_calls is None
    # Under the default policy the same request is refused, naming the field.
    (tmp_path / "strict.yaml").write_text(
        "registration: {model: strict-gpt4all, operations: [createChatCompletion]}\n"
        "local_settings: {backend: gpt4all, model_file: builtin:demo}\n")
    with live_server(built_spec, configs_dir=tmp_path) as strict, pytest.raises(openai.BadRequestError) as raised:
        strict.client().chat.completions.create(model="strict-gpt4all", messages=ASK_WEATHER, tools=[WEATHER])
    assert (raised.value.code, raised.value.param) == ("unsupported_parameter", "tools")
