"""Agent clients, unchanged, on the real model (Gemma 3 270M) over the Responses API, every request
they send recorded (``tests/request_log.py``) and none refused:

- the OpenAI Agents SDK on a gpt-5 model name with the defaults the SDK gives such a name
  (``reasoning.effort`` and ``text.verbosity``), run and streamed, with a function tool. The names
  are registrations on Gemma: ``gpt-5`` (its SDK default effort ``low`` is more than a model that
  does not reason can do, so its registration drops it, by policy, and says so) and
  ``gpt-5.4-mini`` (effort ``none``, which asks for nothing);
- the Vercel AI SDK's default OpenAI provider (the Responses API) in node: ``generateText`` with a
  ``tool()`` and ``stopWhen: stepCountIs(2)`` (``tests/node/ai_sdk_tool_loop.mjs``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import pytest
import yaml
from agents import (
    Agent,
    ModelSettings,
    RunConfig,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.models import get_default_model_settings
from openai import AsyncOpenAI

from tests.conftest import REPO
from tests.request_log import logged_server, request_log  # noqa: F401  (request_log: the fixture `log`)

NODE = REPO / "tests" / "node"
DROPPED = "x-localai-dropped-fields"
# (model name, what the Agents SDK sends for it by default, what the server reports dropped)
GPT5 = [("gpt-5", {"effort": "low"}, "text.verbosity, reasoning"), ("gpt-5.4-mini", {"effort": "none"}, "text.verbosity")]


def gpt5_registrations() -> list[dict]:
    """OpenAI model names served by Gemma, on the example's settings (so one loaded model serves all)."""
    [example] = [entry for entry in yaml.safe_load((REPO / "configs" / "examples" / "gemma3-270m.yaml").read_text())
                 if "createResponse" in entry["registration"]["operations"]]
    gpt5 = {"registration": {"model": "gpt-5", "operations": ["createResponse"]},
            "local_settings": example["local_settings"], "request_defaults": {"max_output_tokens": 256},
            "policy": {"unsupported_parameters": "drop"}}
    mini = {**gpt5, "registration": {"model": "gpt-5.4-mini", "operations": ["createResponse"]}}
    del mini["policy"]
    return [gpt5, mini]


@pytest.fixture(scope="module")
def logged(built_spec, tmp_path_factory):
    with logged_server(built_spec, tmp_path_factory.mktemp("configs"), {"gpt5.yaml": gpt5_registrations()},
                       "gemma3-270m.yaml") as logged:
        yield logged


@pytest.fixture
def agents_on(logged):
    live, _ = logged
    set_default_openai_client(AsyncOpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0),
                              use_for_tracing=False)
    set_default_openai_api("responses")
    set_tracing_disabled(True)


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
@pytest.mark.parametrize(("model", "reasoning", "dropped"), GPT5, ids=[name for name, _, _ in GPT5])
def test_the_agents_sdk_defaults_for_a_gpt5_name(agents_on, log, model, reasoning, dropped, streamed):
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"It is sunny in {city}."

    agent = Agent(name="weather", instructions="Answer weather questions with the get_weather tool.", model=model,
                  tools=[get_weather], tool_use_behavior="stop_on_first_tool")
    assert agent.model_settings == get_default_model_settings(model)  # the SDK's own, for that name
    # The run adds a tool choice (a 270M model is not relied on to choose the tool); the agent's
    # settings (the SDK's defaults) stay under it.
    run_config = RunConfig(model_settings=ModelSettings(tool_choice="required"))

    async def run() -> str:
        if not streamed:
            return (await Runner.run(agent, "What is the weather in Paris?", max_turns=2,
                                     run_config=run_config)).final_output
        result = Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=2, run_config=run_config)
        kinds = {event.type async for event in result.stream_events()}
        assert {"raw_response_event", "run_item_stream_event"} <= kinds
        return result.final_output

    final = asyncio.run(run())
    assert len(cities) == 1 and final == f"It is sunny in {cities[0]}."
    [sent] = log.posts("/v1/responses")
    assert sent.body["model"] == model and sent.body["reasoning"] == reasoning
    assert sent.body["text"] == {"verbosity": "low"} and sent.body["tool_choice"] == "required"
    assert bool(sent.body.get("stream")) is streamed
    assert sent.status == 200 and sent.answer_headers[DROPPED] == dropped


def test_the_ai_sdk_runs_a_tool_and_a_second_step(logged, log):
    live, _ = logged
    done = subprocess.run(["node", "ai_sdk_tool_loop.mjs"], cwd=NODE, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LOCALAI_BASE_URL": live.url + "/v1", "LOCALAI_MODEL": "gemma3-270m"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first, second = result["steps"]
    [call] = first["toolCalls"]
    assert call["toolName"] == "get_weather" and isinstance(call["input"]["city"], str)
    assert first["finishReason"] == "tool-calls"
    assert first["toolResults"] == [{"toolCallId": call["toolCallId"],
                                     "output": f"It is sunny and 24 degrees in {call['input']['city']}."}]
    # The second step ran on the tool's result; on auto the model may answer or call again.
    assert second["finishReason"] in ("stop", "length", "tool-calls")
    assert result["executed"] == [step_call["input"] for step in (first, second) for step_call in step["toolCalls"]]
    sent = log.posts("/v1/responses")
    assert len(sent) == 2 and all(exchange.status == 200 for exchange in sent)
    assert sent[0].body["tool_choice"] == "required" and sent[1].body["tool_choice"] == "auto"
    assert [tool["name"] for tool in sent[0].body["tools"]] == ["get_weather"]
    outputs = [item for item in sent[1].body["input"] if item.get("type") == "function_call_output"]
    assert [item["call_id"] for item in outputs] == [call["toolCallId"]]
