"""Anthropic's Messages API from Anthropic's own document, asked with the official ``anthropic``
SDK against a live server on the demo model (plumbing; behaviour on a real model is in
``test_messages_real.py``): every body, event and error validates against the document the
server serves at ``/anthropic/openapi.json``."""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from tests.conftest import ResponseSchemas, live_server

DEMO = "demo"
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture(scope="module")
def live(built_spec):
    with live_server(built_spec, api_keys=("sk-test",)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=live.url, api_key="sk-test", max_retries=0)


@pytest.fixture(scope="module")
def schemas(live) -> ResponseSchemas:
    return ResponseSchemas.served_by(live, "/anthropic/openapi.json")


def events_of(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_create_answers_a_message_that_validates(client, schemas):
    message = client.messages.create(model=DEMO, max_tokens=8, messages=HI)
    assert message.type == "message" and message.role == "assistant" and message.model == DEMO
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 8
    assert message.content[0].type == "text" and message.content[0].text
    schemas.check("Message", message.model_dump(mode="json"))
    beta = client.beta.messages.create(model=DEMO, max_tokens=4, messages=HI, betas=["context-management-2025-06-27"])
    schemas.check("BetaMessage", beta.model_dump(mode="json"))


def test_stream_sends_anthropics_events_and_get_final_message(client, live, schemas):
    with client.messages.stream(model=DEMO, max_tokens=6, messages=HI) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text and final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 6 and final.usage.input_tokens + final.usage.cache_read_input_tokens > 0
    body = {"model": DEMO, "max_tokens": 4, "messages": HI, "stream": True}
    with live.http() as http:
        response = http.post("/v1/messages?beta=true", json=body, headers={"x-api-key": "sk-test"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    for kind, data in events:
        assert data["type"] == kind
        if kind != "ping":
            schemas.check("BetaMessageStreamEvent", data)
    assert events[-2][1]["usage"]["output_tokens"] == 4


def test_count_tokens_equals_the_prompt_of_the_same_message(client):
    system = "You answer in one word."
    counted = client.messages.count_tokens(model=DEMO, system=system, messages=HI)
    message = client.messages.create(model=DEMO, max_tokens=1, system=system, messages=HI)
    assert counted.input_tokens == message.usage.input_tokens + message.usage.cache_read_input_tokens
    beta = client.beta.messages.count_tokens(model=DEMO, system=system, messages=HI)
    assert beta.input_tokens == counted.input_tokens


def test_a_repeated_prompt_is_read_from_the_cache(client):
    system = "Reuse me. " * 20
    first = client.messages.create(model=DEMO, max_tokens=1, system=system, messages=HI)
    second = client.messages.create(model=DEMO, max_tokens=1, system=system, messages=HI)
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert second.usage.cache_read_input_tokens > total // 2
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == total


def test_errors_are_anthropics_envelope(client, live, schemas):
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=DEMO, max_tokens=4, messages=[{"role": "robot", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error" and "messages[0].role" in bad.value.message
    schemas.check("ErrorResponse", bad.value.body)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-nope", max_tokens=4, messages=HI)
    assert missing.value.body["error"]["type"] == "not_found_error" and "claude-nope" in missing.value.message
    with pytest.raises(anthropic.AuthenticationError) as unauthorized:
        anthropic.Anthropic(base_url=live.url, api_key="wrong", max_retries=0).messages.create(
            model=DEMO, max_tokens=4, messages=HI)
    schemas.check("ErrorResponse", unauthorized.value.body)
    with live.http() as http:
        batches = http.post("/v1/messages/batches?beta=true", json={"requests": []}, headers={"x-api-key": "sk-test"})
        unknown = http.get("/v1/nowhere", headers={"anthropic-version": "2023-06-01"})
    assert batches.status_code == 501 and batches.json()["error"] == {
        "type": "api_error",
        "message": "beta_message_batches_post (POST /v1/messages/batches?beta=true) is not implemented by this server"}
    schemas.check("BetaErrorResponse", batches.json())
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_bearer_tokens_are_accepted_as_the_document_says(live):
    client = anthropic.Anthropic(base_url=live.url, auth_token="sk-test", max_retries=0)
    assert client.messages.create(model=DEMO, max_tokens=2, messages=HI).usage.output_tokens == 2
    with live.http() as http:  # the OpenAI routes keep their own envelope and scheme
        response = http.post("/v1/chat/completions", json={"model": DEMO, "messages": HI},
                             headers={"x-api-key": "sk-test"})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_what_claude_code_sends_is_accepted_and_what_asks_nothing_is_said(client, live):
    system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0; cc_entrypoint=cli; cch=1a2b3;"},
              {"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}}]
    tool = {"name": "Read", "description": "Read a file", "cache_control": {"type": "ephemeral"},
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
    raw = client.beta.messages.with_raw_response.create(
        model=DEMO, max_tokens=2, system=system, messages=HI, tools=[tool], metadata={"user_id": "u1"},
        thinking={"type": "enabled", "budget_tokens": 1024}, betas=["claude-code-20250219"],
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]})
    assert raw.headers["x-localai-dropped-fields"] == "thinking, context_management, system[0]"
    message = raw.parse()
    assert message.usage.output_tokens <= 2 and all(block.type != "thinking" for block in message.content)
    plain = client.messages.with_raw_response.create(model=DEMO, max_tokens=1, messages=HI,
                                                     thinking={"type": "disabled"})
    assert "x-localai-dropped-fields" not in plain.headers


@pytest.mark.parametrize(("content", "param"), [
    ([{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}],
     "messages[0].content[0]"),
    ([{"type": "tool_result", "tool_use_id": "toolu_none", "content": "42"}], "messages[0].tool_call_id"),
])
def test_what_the_models_cannot_take_is_a_400_naming_it(client, content, param):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=DEMO, max_tokens=2, messages=[{"role": "user", "content": content}])
    assert param in refused.value.message


def test_server_tools_and_unknown_choices_are_refused_by_name(client):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=DEMO, max_tokens=2, messages=HI,
                               tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "tools[0].type" in refused.value.message
    with pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(model=DEMO, max_tokens=2, messages=HI, tool_choice={"type": "tool", "name": "Nope"},
                               tools=[{"name": "Read", "input_schema": {"type": "object"}}])
    assert "tool_choice.name" in unknown.value.message


def test_unsupported_fields_follow_the_policy(client):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.messages.create(model=DEMO, max_tokens=2, messages=HI,
                                    mcp_servers=[{"type": "url", "url": "https://example.invalid", "name": "x"}],
                                    betas=["mcp-client-2025-04-04"])
    assert "mcp_servers" in refused.value.message


def test_the_anthropic_document_is_served_and_pinned(live):
    with live.http() as http:
        document = http.get("/anthropic/openapi.json").json()
        yaml_text = http.get("/anthropic/openapi.yaml")
        openai = http.get("/openapi.json").json()
        root = http.head("/")
    assert document["info"]["title"] == "Anthropic API (served by localai-runtime)"
    assert document["paths"]["/v1/messages"]["post"]["x-localai-status"] == "implemented"
    assert document["paths"]["/v1/complete"]["post"]["summary"].startswith("Not implemented: ")
    assert "/v1/models" not in document["paths"] and "/v1/models?beta=true" in document["paths"]
    assert "/v1/messages" not in openai["paths"] and yaml_text.status_code == 200
    assert document["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert root.status_code == 200


def test_beta_query_or_header_reach_the_beta_operation(live):
    """Claude Code sends ?beta=true, the SDKs' beta client only the anthropic-beta header: both
    reach beta_messages_post, whose schema has context_management; a plain request does not."""
    body = {"model": DEMO, "max_tokens": 1, "messages": HI, "context_management": {"edits": []}}
    headers = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
    beta = {**headers, "anthropic-beta": "context-management-2025-06-27"}
    with httpx.Client(base_url=live.url) as http:
        by_query = http.post("/v1/messages", params={"beta": "true"}, json=body, headers=headers)
        by_header = http.post("/v1/messages", json=body, headers=beta)
        plain = http.post("/v1/messages", json=body, headers=headers)
    assert by_query.status_code == 200 and by_header.status_code == 200, (by_query.text, by_header.text)
    assert plain.status_code == 400 and "context_management" in plain.json()["error"]["message"]


def test_the_beta_header_never_shadows_a_served_operation_of_the_other_document(live):
    """``anthropic-beta`` on a path both documents have (``GET /v1/models``, which only OpenAI's
    serves) keeps the served operation: it was routed to Anthropic's unimplemented
    ``/v1/models?beta=true`` and got its 501. An explicit ``?beta=true`` still asks for that one."""
    headers = {"authorization": "Bearer sk-test", "anthropic-beta": "context-management-2025-06-27"}
    with httpx.Client(base_url=live.url) as http:
        listed = http.get("/v1/models", headers=headers)
        explicit = http.get("/v1/models", params={"beta": "true"}, headers=headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["object"] == "list" and DEMO in [model["id"] for model in listed.json()["data"]]
    assert explicit.status_code == 501 and explicit.json()["type"] == "error"
    assert "?beta=true" in explicit.json()["error"]["message"]


@pytest.mark.parametrize("stop", [[f"stop {i}" for i in range(65)], ["x" * 1025]], ids=["65 sequences", "1025 chars"])
def test_stop_sequences_are_bounded_with_a_400_naming_them(client, schemas, stop):
    """Each stop sequence is matched against every generated piece: the list and its strings are
    capped (``patches/anthropic/20-stop-sequences.yaml``), plain and beta, before anything runs."""
    with pytest.raises(anthropic.BadRequestError) as plain:
        client.messages.create(model=DEMO, max_tokens=2, messages=HI, stop_sequences=stop)
    with pytest.raises(anthropic.BadRequestError) as beta:
        client.beta.messages.create(model=DEMO, max_tokens=2, messages=HI, stop_sequences=stop,
                                    betas=["context-management-2025-06-27"])
    assert "stop_sequences" in plain.value.message and "stop_sequences" in beta.value.message
    schemas.check("ErrorResponse", plain.value.body)
    at_the_bound = [f"stop {i}" for i in range(63)] + ["x" * 1024]
    accepted = client.messages.create(model=DEMO, max_tokens=2, messages=HI, stop_sequences=at_the_bound)
    schemas.check("Message", accepted.model_dump(mode="json"))


def test_a_tool_call_cut_off_by_max_tokens_says_so_and_never_fails(client, live, schemas):
    """A call whose arguments ``max_tokens`` cut off (here: a string of at least 400 characters
    in 64 tokens) ends with ``stop_reason: max_tokens`` and the ``tool_use`` block's input as
    ``{}``, whole and streamed (it was a 500 and an ``api_error`` event)."""
    tool = {"name": "Write", "description": "Writes a file", "input_schema": {
        "type": "object", "properties": {"text": {"type": "string", "minLength": 400}}, "required": ["text"]}}
    body = {"model": DEMO, "max_tokens": 64, "messages": HI, "tools": [tool], "tool_choice": {"type": "any"}}
    message = client.messages.create(**body, extra_body={"temperature": 0})
    schemas.check("Message", message.model_dump(mode="json"))
    assert message.stop_reason == "max_tokens"
    [block] = [block for block in message.content if block.type == "tool_use"]
    assert block.name == "Write" and block.input == {}
    with httpx.Client(base_url=live.url, headers={"x-api-key": "sk-test"}, timeout=60) as http:
        streamed = http.post("/v1/messages", json={**body, "temperature": 0, "stream": True})
    assert streamed.status_code == 200
    events = events_of(streamed.text)
    kinds = [kind for kind, _ in events]
    assert "error" not in kinds and kinds[-1] == "message_stop", kinds
    starts = [data["content_block"] for kind, data in events if kind == "content_block_start"]
    assert [block["type"] for block in starts] == ["tool_use"], events
    partial = "".join(data["delta"]["partial_json"] for kind, data in events
                      if kind == "content_block_delta" and data["delta"]["type"] == "input_json_delta")
    assert partial.startswith("{") and len(partial) > 10, partial  # the arguments had begun
    [delta] = [data for kind, data in events if kind == "message_delta"]
    assert delta["delta"]["stop_reason"] == "max_tokens"


def test_a_prefill_the_answer_would_continue_is_refused_naming_it(client):
    """Anthropic continues a final assistant message; rendering it as a finished turn would answer
    something else, so it is a 400 naming the message rather than a silent change."""
    prefill = [*HI, {"role": "assistant", "content": "Hi! I am"}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=DEMO, max_tokens=4, messages=prefill)
    error = refused.value.body["error"]
    assert error["type"] == "invalid_request_error" and "messages[1]" in error["message"], error
    assert "prefill" in error["message"]
    answered = client.messages.create(model=DEMO, max_tokens=4, messages=[*prefill, {"role": "user", "content": "Go on"}])
    assert answered.stop_reason == "max_tokens"
