"""Responses tool types beyond plain functions: hosted tools (dropped or refused by policy),
``namespace`` tools (flattened for the model, called back with their namespace) and ``custom``
tools (the call generated under the tool's Lark or regex grammar), with the official openai
client against a live server: the demo model for the plumbing, Gemma 3 270M for real calls.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import httpx
import pytest

from localai_runtime.serving.registrations import load_registrations
from localai_runtime.settings import resource_dir
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.conftest import live_server
from tests.fake_backend import registry

WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                          "required": ["city"], "additionalProperties": False}}
CODEX_WEB_SEARCH = {"type": "web_search", "external_web_access": False}
"""What Codex CLI sends when web search is off (``codex-rs/tools/src/tool_spec.rs``, ``ToolSpec::WebSearch``)."""
DROPPED = "x-localai-dropped-fields"


def post(live, body: dict) -> httpx.Response:
    with live.http() as http:
        return http.post("/v1/responses", json=body)


@pytest.fixture(scope="module")
def hosted_server(built_spec, tmp_path_factory):
    """The shipped demo registrations, plus ``demo-hosted-drop``: the demo model whose
    registration drops hosted tools (``policy.hosted_tools: drop``) while refusing other
    unsupported fields."""
    directory = tmp_path_factory.mktemp("configs")
    shutil.copy(resource_dir("configs") / "demo-llama-cpp.yaml", directory)
    (directory / "hosted.yaml").write_text(textwrap.dedent("""
        registration: {model: demo-hosted-drop, operations: [createResponse]}
        local_settings: {backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 2048}
        request_defaults: {max_output_tokens: 64}
        policy: {unsupported_parameters: error, hosted_tools: drop}
        """))
    with live_server(built_spec, configs_dir=directory) as live:
        yield live


# -- hosted tools -------------------------------------------------------------------------

def test_a_hosted_tool_is_refused_naming_it_under_the_error_policy(hosted_server):
    response = post(hosted_server, {"model": "demo", "input": "hi", "tools": [WEATHER, CODEX_WEB_SEARCH]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("tools[1].type", "unsupported_parameter")
    assert "web_search" in error["message"]


def test_policy_hosted_tools_drop_removes_and_reports_them(hosted_server, response_schemas):
    response = post(hosted_server, {"model": "demo-hosted-drop", "input": "hi", "tool_choice": "required",
                                    "tools": [CODEX_WEB_SEARCH, WEATHER, {"type": "image_generation"}]})
    assert response.status_code == 200, response.text
    assert response.headers[DROPPED] == "tools[0] (web_search), tools[2] (image_generation)"
    body = response.json()
    response_schemas.check("Response", body)
    calls = [item for item in body["output"] if item["type"] == "function_call"]
    assert calls and calls[0]["name"] == "get_weather"  # the function tool stayed, and was called


def test_only_hosted_tools_dropped_leave_a_plain_answer(hosted_server):
    response = post(hosted_server, {"model": "demo-hosted-drop", "input": "hi", "tool_choice": "auto",
                                    "tools": [CODEX_WEB_SEARCH], "max_output_tokens": 16})
    assert response.status_code == 200, response.text
    assert response.headers[DROPPED] == "tools[0] (web_search)"  # tool_choice auto asks nothing without tools
    assert [item["type"] for item in response.json()["output"]] == ["message"]
    required = post(hosted_server, {"model": "demo-hosted-drop", "input": "hi", "tool_choice": "required",
                                    "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}],
                                    "max_output_tokens": 16})
    assert required.status_code == 200, required.text
    assert required.headers[DROPPED] == "tools[0] (file_search), tool_choice"


@pytest.mark.parametrize(("choice", "reported"), [
    ({"type": "web_search_preview"}, "tool_choice (web_search_preview)"),
    ({"type": "mcp", "server_label": "deepwiki"}, "tool_choice (mcp)"),
    ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "get_weather"},
                                                          {"type": "code_interpreter"}]},
     "tool_choice.tools[1] (code_interpreter)"),
    ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "image_generation"}]},
     "tool_choice.tools[0] (image_generation), tool_choice"),
])
def test_a_tool_choice_naming_a_hosted_tool_goes_with_it(hosted_server, choice, reported):
    response = post(hosted_server, {"model": "demo-hosted-drop", "input": "hi", "tools": [WEATHER],
                                    "tool_choice": choice, "max_output_tokens": 16})
    assert response.status_code == 200, response.text
    assert response.headers[DROPPED] == reported
    refused = post(hosted_server, {"model": "demo", "input": "hi", "tools": [WEATHER], "tool_choice": choice})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"].startswith("tool_choice")


def test_the_hosted_policy_is_checked_at_start_up_and_listed(built_spec, tmp_path):
    schemas = RequestSchemas(built_spec)
    base = "registration: {model: m, operations: [createResponse]}\nlocal_settings: {backend: echo}\n"
    (tmp_path / "a.yaml").write_text(base + "policy: {hosted_tools: sometimes}\n")
    with pytest.raises(Exception, match=r"a\.yaml#0.*hosted_tools"):
        load_registrations(tmp_path, schemas, registry())
    (tmp_path / "a.yaml").write_text(base + "policy: {unsupported_parameters: drop}\n")
    follows = load_registrations(tmp_path, schemas, registry()).lookup("createResponse", "m")
    assert follows.hosted_policy == "drop"  # without its own key, it follows unsupported_parameters
    (tmp_path / "a.yaml").write_text(base + "policy: {unsupported_parameters: drop, hosted_tools: error}\n")
    own = load_registrations(tmp_path, schemas, registry()).lookup("createResponse", "m")
    assert own.hosted_policy == "error" and own.public()["policy"]["hosted_tools"] == "error"


def test_the_registrations_endpoint_shows_the_hosted_policy(hosted_server):
    with hosted_server.http() as http:
        listed = http.get("/v1/localai/registrations").json()
    entries = listed["data"] if isinstance(listed, dict) else listed
    policies = {entry["model"]: entry["policy"]["hosted_tools"] for entry in entries
                if "createResponse" in entry["operations"]}
    assert policies == {"demo": "error", "demo-hosted-drop": "drop"}


DATA = Path(__file__).parent / "data"
