"""What agent clients send on the Responses API, asked of the demo server: fields that ask for
nothing of a model that does not reason are accepted, hints are accepted and reported in
``x-localai-dropped-fields``, reasoning the model cannot do is refused by name, Codex CLI's first
request is answered, and re-sent reasoning items and images in a call's output are weighed.

The demo model writes random text and never stops by itself, so plain answers are bounded with
``max_output_tokens`` and end ``incomplete``.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.test_responses import sse_events

DROPPED = "x-localai-dropped-fields"
SHELL = {"type": "function", "name": "shell", "description": "Runs a command",  # no `strict`, as the AI SDK sends it
         "parameters": {"type": "object", "properties": {"command": {"type": "string", "maxLength": 20}},
                        "required": ["command"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.mark.parametrize("fields", [
    {"client_metadata": {"x-codex-installation-id": "5f0c", "session_id": "s1"}},
    {"prompt_cache_key": "thread-1"},
    {"safety_identifier": "user-1234"},
    {"service_tier": "default"},
    {"reasoning": {"effort": "none"}},
    {"reasoning": {"effort": "minimal", "summary": "auto"}},
    {"reasoning": {"summary": "detailed"}},
    {"reasoning": {"effort": None, "summary": None}},
    {"include": ["reasoning.encrypted_content"]},
], ids=lambda fields: json.dumps(fields))
def test_fields_that_ask_for_nothing_are_accepted_and_nothing_is_reported(client, fields):
    raw = client.responses.with_raw_response.create(model="demo", input="Hi", max_output_tokens=16,
                                                    extra_body=fields)
    assert DROPPED not in raw.headers
    answer = raw.parse()
    assert answer.status == "incomplete" and answer.output_text
    assert all(item.type == "message" for item in answer.output)  # no reasoning items, so nothing encrypted
    assert answer.usage.output_tokens_details.reasoning_tokens == 0


@pytest.mark.parametrize(("fields", "reported"), [
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"text": {"verbosity": "high", "format": {"type": "text"}}}, "text.verbosity"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"service_tier": "priority", "text": {"verbosity": "low"}}, "text.verbosity, service_tier"),
    ({"reasoning": {"effort": "none"}, "text": {"verbosity": "low"}}, "text.verbosity"),  # the Agents SDK, gpt-5.1
])
def test_hints_are_accepted_and_reported_as_dropped(client, fields, reported):
    raw = client.responses.with_raw_response.create(model="demo", input="Hi", max_output_tokens=16, **fields)
    assert raw.headers[DROPPED] == reported
    answer = raw.parse()
    assert answer.status == "incomplete" and answer.text.verbosity == "medium"  # what the answer was written with


def test_an_agents_sdk_stream_is_answered_and_reports_the_hint(server, response_schemas):
    response, events = sse_events(server, {"model": "demo", "input": "Hi", "max_output_tokens": 16,
                                           "reasoning": {"effort": "none"}, "text": {"verbosity": "low"}})
    assert response.status_code == 200 and response.headers[DROPPED] == "text.verbosity"
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.incomplete"
    response_schemas.check("Response", events[-1]["response"])


def test_reading_a_response_back_may_include_encrypted_reasoning(server, client):
    answer = client.responses.create(model="demo", input="Hi", max_output_tokens=16,
                                     include=["reasoning.encrypted_content"])
    encrypted = {"include": "reasoning.encrypted_content"}
    with server.http() as http:  # raw: the SDK writes the query as include[]=
        assert http.get(f"/v1/responses/{answer.id}", params=encrypted).json()["id"] == answer.id
        listed = http.get(f"/v1/responses/{answer.id}/input_items", params=encrypted).json()
        refused = http.get(f"/v1/responses/{answer.id}", params={"include": "message.output_text.logprobs"})
    assert [item["type"] for item in listed["data"]] == ["message"]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "include"


def test_chat_takes_the_same_fields(client):
    raw = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, reasoning_effort="none",
        prompt_cache_key="k", safety_identifier="u", service_tier="flex", verbosity="low")
    assert raw.headers[DROPPED] == "service_tier, verbosity"
    assert raw.parse().choices[0].finish_reason == "length"
    minimal = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, reasoning_effort="minimal",
        service_tier="auto", verbosity="medium")
    assert DROPPED not in minimal.headers


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_reasoning_the_model_cannot_do_is_refused_naming_the_effort(client, effort):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="demo", input="Hi", max_output_tokens=16,
                                reasoning={"effort": effort, "summary": "auto"})
    assert raised.value.param == "reasoning.effort" and raised.value.code == "unsupported_parameter"
    assert "does not reason" in raised.value.message and "'none'" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                       reasoning_effort=effort)
    assert raised.value.param == "reasoning_effort" and "does not reason" in raised.value.message


def test_a_drop_policy_serves_reasoning_without_it_and_says_so(client):
    raw = client.responses.with_raw_response.create(model="demo-gpt4all", input="Hi", max_output_tokens=16,
                                                    reasoning={"effort": "high"}, text={"verbosity": "low"})
    assert raw.headers[DROPPED] == "text.verbosity, reasoning"
    assert raw.parse().status == "incomplete"


def codex_request(**changes) -> dict:
    """The first request of Codex CLI's turn, as it sends it to a custom Responses provider."""
    body = {
        "model": "demo", "instructions": "You are a coding agent running in the Codex CLI. " * 20,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions/>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files"}]},
        ],
        "tools": [SHELL, {**SHELL, "name": "update_plan", "strict": False}],
        "tool_choice": "auto", "parallel_tool_calls": False, "reasoning": {"summary": "auto"},
        "store": False, "stream": True, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199a",
        "client_metadata": {"x-codex-installation-id": "5f0c", "session_id": "0199a", "turn_id": "t1"},
    }
    return {**body, **changes}


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_codex_first_request_is_answered(server, response_schemas, choice):
    bound = {"max_output_tokens": 24} if choice == "auto" else {}  # not Codex's: the demo model never stops
    response, events = sse_events(server, codex_request(tool_choice=choice, **bound))
    assert response.status_code == 200 and DROPPED not in response.headers
    final = events[-1]
    assert final["type"] in ("response.completed", "response.incomplete"), final
    response_schemas.check("Response", final["response"])
    kinds = {item["type"] for item in final["response"]["output"]}
    assert kinds and kinds <= {"message", "function_call"}
    if choice == "required":
        call = final["response"]["output"][0]
        assert call["type"] == "function_call" and call["name"] in ("shell", "update_plan")
        assert isinstance(json.loads(call["arguments"])["command"], str)


def test_a_function_tool_without_strict_is_called(client):
    answer = client.responses.create(model="demo", input="List the files", tools=[SHELL], tool_choice="required")
    assert answer.status == "completed" and [item.type for item in answer.output] == ["function_call"]
    assert answer.tools[0].name == "shell"


LONG = {"type": "function", "name": "apply", "description": "Applies a patch", "parameters": {
    "type": "object", "properties": {"patch": {"type": "string", "minLength": 400}}, "required": ["patch"]}}
"""A tool whose arguments cannot fit in 48 tokens."""


def test_a_call_cut_off_by_max_output_tokens_is_incomplete_so_no_client_runs_it(server, response_schemas):
    # Codex CLI ran a call whose arguments max_output_tokens had cut off ("failed to parse function
    # arguments: EOF") because the item said 'completed'.
    body = codex_request(tool_choice="required", max_output_tokens=48, tools=[LONG])
    response, events = sse_events(server, body)
    final = events[-1]
    assert response.status_code == 200 and final["type"] == "response.incomplete", final
    response_schemas.check("Response", final["response"])
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    [call] = final["response"]["output"]
    assert call["type"] == "function_call" and call["status"] == "incomplete"
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["arguments"])
    done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
    assert [item["status"] for item in done] == ["incomplete"]


def test_text_cut_off_by_max_output_tokens_is_an_incomplete_message(client):
    answer = client.responses.create(model="demo", input="Hi", max_output_tokens=16)
    assert answer.status == "incomplete" and [item.status for item in answer.output] == ["incomplete"]
    whole = client.responses.create(model="demo", input="Hi", max_output_tokens=48, tools=[LONG],
                                    tool_choice="required")
    assert whole.status == "incomplete" and [item.status for item in whole.output] == ["incomplete"]


def test_re_sent_reasoning_items_are_accepted_as_clients_keep_them(client):
    call = {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command": "ls"}'}
    output = {"type": "function_call_output", "call_id": "call_1",
              "output": [{"type": "input_text", "text": "a.txt"}, {"type": "input_text", "text": " b.txt"}]}
    reasoning = [
        {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAABo-opaque"},  # Codex: no id, no content
        {"type": "reasoning", "id": "rs_2", "summary": None, "content": None, "encrypted_content": None},
        {"type": "reasoning", "id": "rs_3", "summary": [{"type": "summary_text", "text": "Listing."}],
         "content": [{"type": "reasoning_text", "text": "I will run ls."}]},
    ]
    user = {"role": "user", "content": "List the files"}
    body = {"model": "demo", "tools": [SHELL], "max_output_tokens": 16}
    answered = client.responses.create(**body, input=[user, *reasoning, call, output])
    without = client.responses.create(**body, input=[user, call, output])
    assert answered.status == without.status == "incomplete"
    assert answered.usage.input_tokens == without.usage.input_tokens  # reasoning is not rendered
    stored = [item.model_dump(exclude_none=True) for item in client.responses.input_items.list(
        answered.id, order="asc").data]
    assert [item["type"] for item in stored] == ["message", "reasoning", "reasoning", "reasoning", "function_call",
                                                 "function_call_output"]
    assert stored[1]["id"].startswith("rs_") and stored[1]["summary"] == []
    assert stored[1]["encrypted_content"] == "gAAAAABo-opaque"
    assert stored[2] == {"type": "reasoning", "id": "rs_2", "summary": []}
    assert stored[3]["content"][0]["text"] == "I will run ls."
    assert stored[5]["output"] == "a.txt b.txt"


@pytest.mark.parametrize(("output", "param"), [
    ([{"type": "input_text", "text": "a screenshot:"},
      {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}], "input[2].output[1]"),
    ([{"type": "input_image", "file_id": "file-123"}], "input[2].output[0]"),
])
def test_an_image_in_a_call_output_is_refused_naming_it(server, output, param):
    call = {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": '{"command": "shot"}'}
    with server.http() as http:
        response = http.post("/v1/responses", json={"model": "demo", "tools": [SHELL], "input": [
            {"role": "user", "content": "Look"}, call, {"type": "function_call_output", "call_id": "call_1",
                                                        "output": output}]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["code"] == "unsupported_parameter"
    assert "input_image" in error["message"] and "text only" in error["message"]
