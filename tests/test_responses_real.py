"""The Responses API on a real model (Gemma 3 270M from the package index), with the official
openai client and the OpenAI Agents SDK on its default model, which speaks the Responses API.

The model is small: these tests check what the server guarantees (calls under the call grammar,
structured output under the schema's grammar, the whole chain rendered), not the model's wit.
"""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest
from agents import (
    Agent,
    ModelSettings,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.conftest import gemma_server

GEMMA = "gemma3-270m"
WEATHER = {"type": "function", "name": "get_weather", "description": "The current weather in a city",
           "strict": True, "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                          "required": ["city"], "additionalProperties": False}}
CITY = {"format": {"type": "json_schema", "name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 40}, "country": {"type": "string",
                                                                                            "maxLength": 40}},
    "required": ["city", "country"], "additionalProperties": False}}}


@pytest.fixture(scope="module")
def real(built_spec, tmp_path_factory):
    with gemma_server(built_spec, tmp_path_factory.mktemp("configs")) as live:
        yield live


def test_structured_output_follows_the_schema(real, response_schemas):
    response = real.client().responses.create(model=GEMMA, input="Name the capital of France and its country.",
                                              text=CITY, temperature=0)
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), CITY["format"]["schema"])
    response_schemas.check("Response", json.loads(response.to_json()))


def test_a_function_tool_loop_on_the_real_model(real):
    client = real.client()
    first = client.responses.create(model=GEMMA, input="What is the weather in Paris?", tools=[WEATHER],
                                    tool_choice="required", temperature=0)
    call = first.output[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    second = client.responses.create(
        model=GEMMA, previous_response_id=first.id, tools=[WEATHER], temperature=0, max_output_tokens=48,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 degrees"}])
    assert second.output and {item.type for item in second.output} <= {"message", "function_call"}
    assert "<tool_call>" not in second.output_text  # a call is an item, never markup in the text
    # The turn was rendered after the call and its output.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens


def test_a_three_turn_chain_sees_turn_one(real):
    client = real.client()
    turns = ["My name is Ada.", "I live in Lyon.", "What is my name?"]
    one = client.responses.create(model=GEMMA, input=turns[0], max_output_tokens=24, temperature=0)
    two = client.responses.create(model=GEMMA, input=turns[1], previous_response_id=one.id,
                                  max_output_tokens=24, temperature=0)
    three = client.responses.create(model=GEMMA, input=turns[2], previous_response_id=two.id,
                                    max_output_tokens=24, temperature=0)
    messages = [{"role": "user", "content": turns[0]}, {"role": "assistant", "content": one.output_text},
                {"role": "user", "content": turns[1]}, {"role": "assistant", "content": two.output_text},
                {"role": "user", "content": turns[2]}]
    chat = client.chat.completions.create(model=GEMMA, messages=messages, max_tokens=1)
    assert three.usage.input_tokens == chat.usage.prompt_tokens  # the same prompt, turn one included
    shorter = client.chat.completions.create(model=GEMMA, messages=messages[2:], max_tokens=1)
    assert three.usage.input_tokens > shorter.usage.prompt_tokens


@pytest.fixture
def agents_on(real):
    client = AsyncOpenAI(base_url=real.url + "/v1", api_key="unused", max_retries=0)
    set_default_openai_client(client, use_for_tracing=False)
    set_default_openai_api("responses")
    set_tracing_disabled(True)
    return client


@pytest.mark.parametrize("streamed", [False, True])
def test_the_agents_sdk_runs_an_agent_with_a_function_tool(agents_on, streamed):
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"It is sunny in {city}."

    agent = Agent(name="weather", instructions="Answer weather questions with the get_weather tool.",
                  model=GEMMA, tools=[get_weather], tool_use_behavior="stop_on_first_tool",
                  model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=200))

    async def run() -> str:
        if not streamed:
            return (await Runner.run(agent, "What is the weather in Paris?", max_turns=3)).final_output
        result = Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=3)
        kinds = {event.type async for event in result.stream_events()}
        assert "raw_response_event" in kinds
        return result.final_output

    final = asyncio.run(run())
    assert len(cities) == 1 and final == f"It is sunny in {cities[0]}."


def test_the_agents_sdk_gets_structured_output(agents_on):
    class City(BaseModel):
        city: str
        country: str

    agent = Agent(name="geo", instructions="Answer with the city and its country.", model=GEMMA, output_type=City,
                  model_settings=ModelSettings(temperature=0, max_tokens=200))
    result = asyncio.run(Runner.run(agent, "The capital of France?", max_turns=1))
    assert isinstance(result.final_output, City) and result.final_output.city
