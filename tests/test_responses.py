"""The Responses API on the demo model, asked with the official openai client: objects and
stream events as the document and the SDK's stream helper expect them, function calls as items,
stored responses and their chains, background runs, and every mistake named.

The demo model writes random text and never stops by itself: a plain answer ends ``incomplete``
at ``max_output_tokens``; a JSON-schema format or a forced call gives short ``completed`` ones.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import openai
import pytest

from localai_runtime.errors import InvalidRequestError, UnsupportedParameterError
from localai_runtime.responses.request import chat_request
from tests.conftest import hold_instances, live_server, model_pool, wait_until

YES_NO = {"format": {"type": "json_schema", "name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
    "additionalProperties": False}}}
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city", "strict": True,
           "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}},
                          "required": ["city"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def sse_events(live, body: dict) -> tuple[httpx.Response, list[dict]]:
    with live.http() as http, http.stream("POST", "/v1/responses", json={**body, "stream": True}) as response:
        lines = list(response.iter_lines())
    events, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            event = json.loads(line[len("data: "):])
            assert event["type"] == kind, (kind, event)
            events.append(event)
    return response, events


def check_event(schemas, event: dict) -> None:
    """``event`` against the component of ``ResponseStreamEvent`` for its type (a failure then
    says what is wrong, not only that no branch of the union matched)."""
    components = schemas.document["components"]["schemas"]
    for branch in components["ResponseStreamEvent"]["anyOf"]:
        name = branch["$ref"].rsplit("/", 1)[-1]
        if event["type"] in (components[name]["properties"]["type"].get("enum") or ()):
            schemas.check(name, event)
            return
    raise AssertionError(f"no stream event schema for {event['type']}")


def test_a_response_is_stored_and_conforms(client, response_schemas):
    created = client.responses.create(model="demo", input="Say something", max_output_tokens=16,
                                      metadata={"team": "a"})
    body = created.model_dump(mode="json")
    response_schemas.check("Response", json.loads(created.to_json()))
    assert created.status == "incomplete" and created.incomplete_details.reason == "max_output_tokens"
    assert created.usage.output_tokens == 16 and created.usage.input_tokens > 0
    assert created.output[0].type == "message" and created.output_text
    assert created.store is True and created.metadata == {"team": "a"}
    fetched = client.responses.retrieve(created.id)
    assert fetched.model_dump(mode="json") == body


def test_the_stream_has_the_sequence_the_sdk_expects(server, response_schemas):
    response, events = sse_events(server, {"model": "demo", "input": "Answer", "text": YES_NO})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    item_id = events[2]["item"]["id"]
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert {(e["item_id"], e["output_index"], e["content_index"]) for e in deltas} == {(item_id, 0, 0)}
    final = events[-1]["response"]
    assert final["id"] == events[0]["response"]["id"] and final["output"][0]["id"] == item_id
    assert "".join(e["delta"] for e in deltas) == final["output"][0]["content"][0]["text"]
    assert json.loads(final["output"][0]["content"][0]["text"])["answer"] in ("yes", "no")
    for event in events:
        check_event(response_schemas, event)
    with server.http() as http:
        assert http.get(f"/v1/responses/{final['id']}").json() == final


def test_the_sdk_stream_helper_gets_the_final_response(client):
    with client.responses.stream(model="demo", input="Answer", text=YES_NO) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert final.status == "completed" and json.loads(final.output_text)["answer"] in ("yes", "no")
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_function_calls_are_items_with_the_same_ids_everywhere(server, client, response_schemas):
    body = {"model": "demo", "input": "Weather in Paris?", "tools": [WEATHER], "tool_choice": "required"}
    _, events = sse_events(server, body)
    kinds = [e["type"] for e in events]
    assert "response.output_text.delta" not in kinds  # no call markup as text
    added = next(e for e in events if e["type"] == "response.output_item.added")["item"]
    assert added["type"] == "function_call" and added["name"] == "get_weather" and added["arguments"] == ""
    arguments = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == arguments and done["item_id"] == added["id"] and done["name"] == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [(o["id"], o["call_id"]) for o in final["output"]] == [(added["id"], added["call_id"])]
    stored = client.responses.retrieve(final["id"])
    assert stored.output[0].call_id == added["call_id"] and stored.output[0].arguments == arguments
    whole = client.responses.create(**body)
    response_schemas.check("Response", json.loads(whole.to_json()))
    assert [o.type for o in whole.output] == ["function_call"] and whole.status == "completed"


def test_a_tool_loop_continues_from_the_call_output(client):
    first = client.responses.create(model="demo", input="Weather in Paris?", tools=[WEATHER], tool_choice="required")
    call = first.output[0]
    second = client.responses.create(model="demo", previous_response_id=first.id, tools=[WEATHER], text=YES_NO,
                                     input=[{"type": "function_call_output", "call_id": call.call_id,
                                             "output": "sunny"}])
    assert second.status == "completed" and second.previous_response_id == first.id
    as_chat = client.chat.completions.create(model="demo", max_tokens=1, tools=[
        {"type": "function", "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")}}],
        messages=[{"role": "user", "content": "Weather in Paris?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"id": call.call_id, "type": "function",
                   "function": {"name": call.name, "arguments": call.arguments}}]},
                  {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}])
    assert second.usage.input_tokens == as_chat.usage.prompt_tokens  # the call and its output were rendered
    items = client.responses.input_items.list(second.id).data
    assert [(i.type, i.call_id) for i in items] == [("function_call_output", call.call_id)]


def chat_prompt_tokens(client, messages: list[dict]) -> int:
    """Prompt tokens of the same conversation sent as a chat completion (same model, template)."""
    return client.chat.completions.create(model="demo", messages=messages, max_tokens=1).usage.prompt_tokens


def test_a_three_turn_chain_renders_every_earlier_turn(client):
    one = client.responses.create(model="demo", input="first question", instructions="Be brief.", text=YES_NO)
    two = client.responses.create(model="demo", input="second question", previous_response_id=one.id, text=YES_NO)
    three = client.responses.create(model="demo", input="third question", previous_response_id=two.id,
                                    text=YES_NO, instructions="Be brief.")
    history = [{"role": "system", "content": "Be brief."},
               {"role": "user", "content": "first question"}, {"role": "assistant", "content": one.output_text},
               {"role": "user", "content": "second question"}, {"role": "assistant", "content": two.output_text},
               {"role": "user", "content": "third question"}]
    assert three.usage.input_tokens == chat_prompt_tokens(client, history)
    without_turn_one = [history[0], *history[3:]]
    assert three.usage.input_tokens > chat_prompt_tokens(client, without_turn_one)
    # A follow-up sent at once after its previous turn sees it (stored before the answer left).
    assert client.responses.retrieve(three.id).previous_response_id == two.id


def test_a_chain_may_change_model(client):
    first = client.responses.create(model="demo", input="hello", text=YES_NO)
    second = client.responses.create(model="demo-gpt4all", input="again", previous_response_id=first.id,
                                     max_output_tokens=16)
    assert second.model == "demo-gpt4all" and second.previous_response_id == first.id
    assert second.usage.input_tokens > first.usage.input_tokens


def test_input_items_page_in_both_orders(client, response_schemas):
    messages = [{"role": "user", "content": f"message {i}"} for i in range(5)]
    created = client.responses.create(model="demo", input=messages, max_output_tokens=16)
    ids = [item.id for item in client.responses.input_items.list(created.id, order="asc").data]
    assert len(ids) == 5 and len(set(ids)) == 5
    page = client.responses.input_items.list(created.id, order="asc", limit=2)
    assert [i.id for i in page.data] == ids[:2] and page.has_more and page.last_id == ids[1]
    rest = client.responses.input_items.list(created.id, order="asc", after=ids[1], limit=10)
    assert [i.id for i in rest.data] == ids[2:] and not rest.has_more
    newest = client.responses.input_items.list(created.id, limit=2)  # default order: desc
    assert [i.id for i in newest.data] == ids[::-1][:2]
    raw = client.responses.input_items.with_raw_response.list(created.id).http_response.json()
    response_schemas.check("ResponseItemList", raw)
    assert raw["data"][0]["content"] == [{"type": "input_text", "text": "message 4"}]


def test_delete_then_get_is_404(client):
    created = client.responses.create(model="demo", input="bye", max_output_tokens=16)
    client.responses.delete(created.id)
    for call in (lambda: client.responses.retrieve(created.id), lambda: client.responses.delete(created.id),
                 lambda: client.responses.input_items.list(created.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert created.id in caught.value.body["message"]


def test_store_false_is_not_kept(client):
    created = client.responses.create(model="demo", input="keep nothing", max_output_tokens=16, store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


def test_background_runs_after_answering_queued_and_can_be_cancelled(client):
    done = client.responses.create(model="demo", input="Answer", text=YES_NO, background=True)
    assert done.status == "queued" and done.background is True
    wait_until(lambda: client.responses.retrieve(done.id).status == "completed", "the background response")
    assert json.loads(client.responses.retrieve(done.id).output_text)["answer"] in ("yes", "no")

    long = client.responses.create(model="demo", input="Write a lot", background=True, max_output_tokens=2000)
    wait_until(lambda: client.responses.retrieve(long.id).status == "in_progress", "the generation to start")
    cancelled = client.responses.cancel(long.id)
    assert cancelled.status == "cancelled" and client.responses.retrieve(long.id).status == "cancelled"
    answered = client.responses.create(model="demo", input="next", max_output_tokens=16)  # the model is free again
    assert answered.status == "incomplete"
    with pytest.raises(openai.BadRequestError, match="Only background responses"):
        client.responses.cancel(answered.id)


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"input": "x", "previous_response_id": "resp_unknown"}, 404, "previous_response_id"),
    ({"input": "x", "conversation": "conv_unknown"}, 404, "conversation"),
    ({"input": [{"role": "user", "content": "hi"}, {"type": "function_call_output", "call_id": "c1", "output": "x"}]},
     400, "input[1].call_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://127.0.0.1/a.png",
                                              "detail": "auto"}]}]}, 400, "input[0].content[0]"),
    ({"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "not json"}]}, 400,
     "input[0].arguments"),
    ({"input": "x", "tools": [{"type": "web_search"}]}, 400, "tools[0].type"),
    ({"input": "x", "tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, 400,
     "tool_choice.name"),
    ({"input": "x", "reasoning": {"effort": "high"}}, 400, "reasoning.effort"),
    ({"input": "x", "include": ["message.output_text.logprobs"]}, 400, "include"),
    ({"input": "x", "include": ["reasoning.encrypted_content", "message.output_text.logprobs"]}, 400, "include"),
    ({"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": [
                    {"type": "input_image", "image_url": "http://127.0.0.1/a.png"}]}]}, 400, "input[1].output[0]"),
    ({"input": "x", "text": {"format": {"type": "json_object"}}, "x-localai-extensions": {"grammar": 'root ::= "a"'}},
     400, "text.format"),
    ({"input": "x", "background": True, "stream": True}, 400, "stream"),
    ({"input": "x", "previous_response_id": "resp_a", "conversation": "conv_b"}, 400, "conversation"),
])
def test_mistakes_are_named(server, body, status, param):
    with server.http() as http:
        response = http.post("/v1/responses", json={"model": "demo", **body})
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param, response.text


def test_truncation_disabled_refuses_and_auto_drops_the_oldest_items(server):
    long = [{"role": "user", "content": " ".join(f"word{i}x{j}" for j in range(150))} for i in range(12)]
    with server.http() as http:
        refused = http.post("/v1/responses", json={"model": "demo", "input": long, "max_output_tokens": 16})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "context_length_exceeded"
        assert refused.json()["error"]["param"] == "input"
        fitted = http.post("/v1/responses", json={"model": "demo", "input": long, "max_output_tokens": 16,
                                                  "truncation": "auto"})
    assert fitted.status_code == 200, fitted.text
    dropped = int(fitted.headers["x-localai-truncated-input-items"])
    assert 0 < dropped < len(long)
    assert fitted.json()["truncation"] == "auto" and fitted.json()["usage"]["input_tokens"] < 2048


def test_a_backend_without_tools_drops_them_under_its_policy(client):
    raw = client.responses.with_raw_response.create(model="demo-gpt4all", input="hi", tools=[WEATHER],
                                                    max_output_tokens=16)
    assert "tools" in raw.headers["x-localai-dropped-fields"]
    assert raw.parse().status == "incomplete"


def test_a_client_that_leaves_a_stream_frees_the_model(server, client):
    with server.http() as http, http.stream("POST", "/v1/responses", json={
            "model": "demo", "input": "long", "stream": True, "max_output_tokens": 2000}) as response:
        for line in response.iter_lines():
            if "output_text.delta" in line:
                break
    started = time.monotonic()
    answer = client.responses.create(model="demo", input="next", max_output_tokens=16)
    assert answer.status == "incomplete" and time.monotonic() - started < 20


def test_re_sent_output_and_reasoning_items_are_accepted(client):
    first = client.responses.create(model="demo", input="Answer", text=YES_NO)
    earlier = [item.model_dump(mode="json", exclude_none=True) for item in first.output]
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking."}]}
    second = client.responses.create(model="demo", text=YES_NO, input=[
        {"role": "user", "content": "Answer"}, reasoning, *earlier, {"role": "user", "content": "Again"}])
    assert second.status == "completed"
    without_reasoning = client.responses.create(model="demo", text=YES_NO, input=[
        {"role": "user", "content": "Answer"}, *earlier, {"role": "user", "content": "Again"}])
    assert second.usage.input_tokens == without_reasoning.usage.input_tokens  # reasoning is not rendered
    kinds = [item.type for item in client.responses.input_items.list(second.id, order="asc").data]
    assert kinds == ["message", "reasoning", "message", "message"]


@pytest.mark.parametrize("include", [None, True, False])
def test_deltas_are_padded_unless_the_client_turns_obfuscation_off(server, include):
    options = {} if include is None else {"stream_options": {"include_obfuscation": include}}
    _, events = sse_events(server, {"model": "demo", "input": "Answer", "text": YES_NO, **options})
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas
    if include is False:
        assert not any("obfuscation" in e for e in deltas)
    else:
        assert all((len(e["delta"]) + len(e["obfuscation"])) % 32 == 0 and e["obfuscation"] for e in deltas)


def test_a_background_response_is_queued_until_it_has_an_instance_and_cancel_leaves_a_finished_one(server,
                                                                                                   client):
    with hold_instances(server, "createResponse", "demo"):
        waiting = client.responses.create(model="demo", input="Answer", text=YES_NO, background=True)
        time.sleep(0.3)
        assert client.responses.retrieve(waiting.id).status == "queued"  # not in progress while it waits
    wait_until(lambda: client.responses.retrieve(waiting.id).status == "completed", "the queued response")
    after = client.responses.cancel(waiting.id)  # too late: the answer stands
    assert after.status == "completed" and json.loads(after.output_text)["answer"] in ("yes", "no")


def test_a_background_response_the_queue_cannot_take_is_refused_at_once(built_spec):
    with live_server(built_spec, queue_size=0) as live, hold_instances(live, "createResponse", "demo"), \
            pytest.raises(openai.RateLimitError):
        live.client().responses.create(model="demo", input="x", text=YES_NO, background=True)


def test_background_responses_sent_together_take_the_queue_places_there_are_and_no_more(built_spec):
    # Six at once while every instance is busy and the queue has two places: two accepted, four 429s
    # at submission, and none accepted only to be stored failed with "model busy" later.
    body = {"model": "demo", "input": "x", "text": YES_NO, "background": True, "max_output_tokens": 16}
    with live_server(built_spec, queue_size=2) as live:
        with hold_instances(live, "createResponse", "demo"), concurrent.futures.ThreadPoolExecutor(6) as threads:
            def submit(_):
                with live.http() as http:
                    return http.post("/v1/responses", json=body)
            answers = list(threads.map(submit, range(6)))
            assert sorted(a.status_code for a in answers) == [200, 200, 429, 429, 429, 429], [a.text for a in answers]
        client = live.client()
        for accepted in (a.json() for a in answers if a.status_code == 200):
            assert accepted["status"] == "queued"

            def ended(response_id=accepted["id"]) -> bool:
                return client.responses.retrieve(response_id).status not in ("queued", "in_progress")

            wait_until(ended, "the background response ran")
            assert client.responses.retrieve(accepted["id"]).status in ("completed", "incomplete")  # not failed
        assert model_pool(live, "createResponse", "demo").waiting == 0  # every place was given back


def test_truncation_keeps_the_instructions_and_drops_calls_with_their_outputs():
    from localai_runtime.responses.turn import _drop_oldest

    def message(role, item_id):
        return {"type": "message", "role": role, "id": item_id}

    def call(call_id):
        return {"type": "function_call", "call_id": call_id, "id": f"fc_{call_id}"}

    def output(call_id):
        return {"type": "function_call_output", "call_id": call_id, "id": f"out_{call_id}"}

    items = [message("developer", "rules"), call("1"), call("2"), output("1"), output("2"), message("user", "now")]
    assert [i["id"] for i in _drop_oldest(items)] == ["rules", "fc_2", "out_2", "now"]
    assert _drop_oldest([message("system", "rules"), message("user", "now")]) == \
        [message("system", "rules"), message("user", "now")]  # nothing left to drop: the caller refuses


@pytest.mark.parametrize(("request_tools", "error", "param"), [
    ({"tools": [{**WEATHER, "parameters": {"type": "string"}}]}, InvalidRequestError, "tools[0].parameters"),
    ({"tools": [WEATHER, WEATHER]}, InvalidRequestError, "tools[1].name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [
        {"type": "function", "name": "other"}]}}, InvalidRequestError, "tool_choice.tools[0].name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [
        {"type": "mcp", "server_label": "x"}]}}, UnsupportedParameterError, "tool_choice.tools[0].type"),
    ({"tool_choice": "required"}, InvalidRequestError, "tool_choice"),
])
def test_tool_mistakes_name_the_responses_field(request_tools, error, param):
    with pytest.raises(error) as caught:
        chat_request({"model": "demo", **request_tools}, [{"role": "user", "content": "hi"}])
    assert caught.value.param == param


def test_tools_reach_the_chat_request_in_chat_shape():
    chat, tools, _ = chat_request({"model": "demo", "tools": [WEATHER], "tool_choice": {"type": "function",
                                "name": "get_weather"}}, [{"role": "user", "content": "hi"}])
    assert chat["tools"] == [{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "parameters", "description", "strict")}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert (tools.mode, tools.allowed, [t.name for t in tools.tools]) == ("required", ("get_weather",), ["get_weather"])


def test_text_format_is_parsed_once_naming_the_responses_fields():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat, _, form = chat_request({"model": "demo", "text": {"format": {"type": "json_schema", "name": "t",
                                  "schema": schema}}}, [{"role": "user", "content": "hi"}])
    assert (form.type, form.schema, form.param, form.schema_param) == (
        "json_schema", schema, "text.format", "text.format.schema")
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}
    _, _, plain = chat_request({"model": "demo"}, [{"role": "user", "content": "hi"}])
    assert not plain.constrained
