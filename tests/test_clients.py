"""The libraries people point at an OpenAI-compatible server, unchanged, against a real server on
the real model (Gemma 3 270M, ``configs/examples/gemma3-270m.yaml``): LangChain's ``bind_tools``
and ``with_structured_output`` (JSON schema and function calling), instructor in TOOLS and
JSON_SCHEMA modes, and pydantic-ai with a structured ``output_type``. Each must get a complete
object of the asked type, which only a server that honours tool_choice and structured output
(and does not cut JSON short) can give a 270M base model.
"""

from __future__ import annotations

import instructor
import openai
import pytest
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from tests.conftest import gemma_server

GEMMA = "gemma3-270m"
QUESTION = "What is the weather in Paris?"


class Weather(BaseModel):
    """Ask for the current weather in a city."""

    city: str = Field(description="The city")


class City(BaseModel):
    """A city and its country."""

    name: str
    country: str


@pytest.fixture(scope="module")
def real(built_spec, tmp_path_factory):
    with gemma_server(built_spec, tmp_path_factory.mktemp("configs")) as live:
        yield live


def chat_model(real) -> ChatOpenAI:
    return ChatOpenAI(model=GEMMA, base_url=real.url + "/v1", api_key="unused", temperature=0, max_retries=0)


def test_langchain_bind_tools_with_a_forced_tool(real):
    message = chat_model(real).bind_tools([Weather], tool_choice="Weather").invoke(QUESTION)
    [call] = message.tool_calls
    assert call["name"] == "Weather" and isinstance(call["args"]["city"], str) and call["id"].startswith("call_")


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(real, method):
    city = chat_model(real).with_structured_output(City, method=method).invoke("Name a city in France.")
    assert isinstance(city, City) and city.name and city.country


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA])
def test_instructor(real, mode):
    client = instructor.from_openai(openai.OpenAI(base_url=real.url + "/v1", api_key="unused", max_retries=0),
                                    mode=mode)
    city = client.chat.completions.create(model=GEMMA, response_model=City, temperature=0, max_retries=0,
                                          messages=[{"role": "user", "content": "Name a city in France."}])
    assert isinstance(city, City) and city.name and city.country


def test_pydantic_ai_structured_output(real):
    model = OpenAIChatModel(GEMMA, provider=OpenAIProvider(base_url=real.url + "/v1", api_key="unused"))
    agent = Agent(model, output_type=City, retries=0)
    result = agent.run_sync("Name a city in France.", model_settings={"temperature": 0})
    assert isinstance(result.output, City) and result.output.name and result.output.country
