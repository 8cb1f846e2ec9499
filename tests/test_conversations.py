"""Conversations and their items, with the official openai client against the session's live
server (whose store is a SQLite file in a temporary directory): the conversation's life, paging
through its items, createResponse adding each turn to it, and the mistakes that name what is
wrong. Every body is checked against the document the server serves.
"""

from __future__ import annotations

import sqlite3

import openai
import pytest

JSON_ANSWER = {"format": {"type": "json_schema", "name": "a", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
    "additionalProperties": False}}}
"""Makes the demo model's answer short and ``completed`` (its plain text never ends)."""


def user(text: str, **extra) -> dict:
    return {"type": "message", "role": "user", "content": text, **extra}


def texts(items) -> list[str]:
    return [part.text for item in items for part in item.content]


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def test_a_conversation_is_created_retrieved_updated_and_deleted(client, response_schemas):
    created = client.conversations.create(metadata={"topic": "sky"}, items=[user("Hello"), user("Is the sky blue?")])
    response_schemas.check("ConversationResource", created.to_dict())
    assert created.id.startswith("conv_") and created.object == "conversation"
    assert created.metadata == {"topic": "sky"}

    retrieved = client.conversations.retrieve(created.id)
    response_schemas.check("ConversationResource", retrieved.to_dict())
    assert retrieved.to_dict() == created.to_dict()

    updated = client.conversations.update(created.id, metadata={"topic": "sea", "mood": "calm"})
    response_schemas.check("ConversationResource", updated.to_dict())
    assert updated.metadata == {"topic": "sea", "mood": "calm"} and updated.created_at == created.created_at
    assert client.conversations.retrieve(created.id).metadata == {"topic": "sea", "mood": "calm"}

    items = client.conversations.items.list(created.id, order="asc")
    response_schemas.check("ConversationItemList", items.to_dict())
    assert texts(items.data) == ["Hello", "Is the sky blue?"]
    assert [(item.type, item.role, item.content[0].type) for item in items.data] == [("message", "user", "input_text")] * 2

    deleted = client.conversations.delete(created.id)
    response_schemas.check("DeletedConversationResource", deleted.to_dict())
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError) as gone:
        client.conversations.retrieve(created.id)
    assert created.id in gone.value.message
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(items.data[0].id, conversation_id=created.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.delete(created.id)


def test_items_are_paged_by_limit_after_and_order(client, response_schemas):
    conversation = client.conversations.create(items=[user(str(n)) for n in range(5)])

    def pages(order: str) -> list[tuple[list[str], bool]]:
        seen, after = [], None
        while True:
            page = client.conversations.items.list(conversation.id, limit=2, order=order,
                                                   **({"after": after} if after else {}))
            response_schemas.check("ConversationItemList", page.to_dict())
            assert (page.first_id, page.last_id) == (page.data[0].id, page.data[-1].id)
            seen.append((texts(page.data), page.has_more))
            if not page.has_more:
                return seen
            after = page.last_id

    assert pages("asc") == [(["0", "1"], True), (["2", "3"], True), (["4"], False)]
    assert pages("desc") == [(["4", "3"], True), (["2", "1"], True), (["0"], False)]
    default = client.conversations.items.list(conversation.id)  # newest first, up to 20
    assert texts(default.data) == ["4", "3", "2", "1", "0"] and not default.has_more
    # the client's own auto-paging follows last_id
    assert texts(client.conversations.items.list(conversation.id, limit=2, order="asc")) == ["0", "1", "2", "3", "4"]


def test_items_are_added_retrieved_and_deleted(client, response_schemas):
    conversation = client.conversations.create(items=[user("first")])
    added = client.conversations.items.create(conversation.id, items=[
        user("second"), {"type": "message", "role": "assistant", "content": "third"}])
    response_schemas.check("ConversationItemList", added.to_dict())
    assert texts(added.data) == ["second", "third"]
    assert [item.content[0].type for item in added.data] == ["input_text", "output_text"]
    listed = client.conversations.items.list(conversation.id, order="asc").data
    assert texts(listed) == ["first", "second", "third"]
    assert [item.id for item in listed[1:]] == [item.id for item in added.data]

    second = client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    response_schemas.check("ConversationItem", second.to_dict())
    assert second.to_dict() == added.data[0].to_dict()

    after_delete = client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    response_schemas.check("ConversationResource", after_delete.to_dict())
    assert after_delete.id == conversation.id and after_delete.object == "conversation"
    assert texts(client.conversations.items.list(conversation.id, order="asc").data) == ["first", "third"]
    with pytest.raises(openai.NotFoundError) as missing:
        client.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert added.data[0].id in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)


def test_a_response_in_a_conversation_adds_its_input_and_output_and_the_next_turn_sees_them(client, response_schemas):
    conversation = client.conversations.create()
    first = client.responses.create(model="demo", input="Is the sky blue?", conversation=conversation.id,
                                    text=JSON_ANSWER)
    response_schemas.check("Response", first.to_dict())
    assert first.status == "completed" and first.conversation.id == conversation.id
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [(item.type, item.role) for item in items] == [("message", "user"), ("message", "assistant")]
    assert texts(items) == ["Is the sky blue?", first.output_text]
    assert items[1].id == first.output[0].id

    second = client.responses.create(model="demo", input=[user("Are you sure?")], conversation={"id": conversation.id},
                                     text=JSON_ANSWER)
    assert second.status == "completed" and second.conversation.id == conversation.id
    assert second.usage.input_tokens >= first.usage.input_tokens + first.usage.output_tokens
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert texts(items) == ["Is the sky blue?", first.output_text, "Are you sure?", second.output_text]
    assert client.responses.retrieve(second.id).conversation.id == conversation.id


def test_conversation_and_previous_response_id_together_are_refused(client):
    conversation = client.conversations.create()
    earlier = client.responses.create(model="demo", input="Hi", max_output_tokens=16)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="demo", input="Again", conversation=conversation.id,
                                previous_response_id=earlier.id, max_output_tokens=16)
    assert raised.value.param == "conversation"
    assert client.conversations.items.list(conversation.id).data == []


def test_a_response_in_a_conversation_must_be_stored(client):
    conversation = client.conversations.create()
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="demo", input="Hi", conversation=conversation.id, store=False,
                                max_output_tokens=16)
    assert raised.value.param == "store"


def test_an_unknown_conversation_is_404_naming_it(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.responses.create(model="demo", input="Hi", conversation="conv_unknown", max_output_tokens=16)
    assert "conv_unknown" in raised.value.message and raised.value.param == "conversation"
    for call in (lambda: client.conversations.retrieve("conv_unknown"),
                 lambda: client.conversations.update("conv_unknown", metadata={"a": "b"}),
                 lambda: client.conversations.items.list("conv_unknown"),
                 lambda: client.conversations.items.create("conv_unknown", items=[user("Hi")]),
                 lambda: client.conversations.items.retrieve("msg_x", conversation_id="conv_unknown"),
                 lambda: client.conversations.items.delete("msg_x", conversation_id="conv_unknown")):
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert "conv_unknown" in raised.value.message


@pytest.mark.parametrize(("item", "param"), [
    ({"type": "function_call_output", "call_id": "call_1",
      "output": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}, "items[1].output[0]"),
    ({"type": "web_search_call", "id": "ws_1", "status": "completed",
      "action": {"type": "search", "query": "sky"}}, "items[1].type"),
    ({"type": "message", "role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": "AAAA", "format": "wav"}}]}, "items[1].content"),  # the document refuses it: no part fits
], ids=["image-in-a-call-output", "web-search-call", "audio-content"])
def test_a_malformed_item_is_400_naming_it_and_nothing_is_added(client, item, param):
    conversation = client.conversations.create(items=[user("kept")])
    call = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.items.create(conversation.id, items=[call, item])
    assert raised.value.param.startswith(param), raised.value.param
    assert texts(client.conversations.items.list(conversation.id).data) == ["kept"]
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.create(items=[call, item])
    assert raised.value.param.startswith(param), raised.value.param


def test_calls_and_their_outputs_can_be_added(client):
    conversation = client.conversations.create()
    client.conversations.items.create(conversation.id, items=[
        user("Weather?"), {"type": "function_call", "call_id": "call_w", "name": "weather", "arguments": "{}"}])
    added = client.conversations.items.create(conversation.id, items=[
        {"type": "function_call_output", "call_id": "call_w", "output": "sunny"}])
    assert added.data[0].type == "function_call_output" and added.data[0].output == "sunny"
    answered = client.responses.create(model="demo", input="So?", conversation=conversation.id, text=JSON_ANSWER)
    assert answered.status == "completed"


def test_a_call_output_that_answers_no_call_is_refused_when_added(client):
    """Found broken: the item is accepted, and afterwards every createResponse in the
    conversation is a 400 naming ``messages[0].tool_call_id``, a field the request does not have."""
    conversation = client.conversations.create(items=[user("Hi")])
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.items.create(conversation.id, items=[
            {"type": "function_call_output", "call_id": "call_nowhere", "output": "x"}])
    assert raised.value.param == "items[0].call_id"
    answered = client.responses.create(model="demo", input="Still there?", conversation=conversation.id,
                                       max_output_tokens=16)
    assert answered.status == "incomplete"


def test_an_item_id_already_in_the_conversation_is_400(client):
    """Found broken: the store's unique (conversation, item id) constraint fails, which comes
    out as a 503 'The response store cannot be used'."""
    conversation = client.conversations.create(items=[user("Hi", id="msg_mine")])
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.items.create(conversation.id, items=[user("Again", id="msg_mine")])
    assert raised.value.param == "items[0].id"
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.items.create(conversation.id, items=[user("a", id="msg_twice"), user("b", id="msg_twice")])
    assert raised.value.param == "items[1].id"
    assert texts(client.conversations.items.list(conversation.id).data) == ["Hi"]


def test_an_input_item_id_already_in_the_conversation_is_400_before_generating(client, isolated_data_dir):
    """Found broken: the model generates, the response is stored (naming the conversation), then
    appending its input to the conversation fails the unique constraint and the client gets a 503."""
    conversation = client.conversations.create(items=[user("Hi", id="msg_taken")])
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="demo", input=[user("Again", id="msg_taken")], conversation=conversation.id,
                                max_output_tokens=16)
    assert raised.value.param == "input[0].id"
    assert texts(client.conversations.items.list(conversation.id).data) == ["Hi"]
    with sqlite3.connect(isolated_data_dir / "localai.db") as db:  # the session server's store
        query = "SELECT count(*) FROM localai_responses WHERE conversation_id = ?"
        assert db.execute(query, (conversation.id,)).fetchone()[0] == 0


def test_the_agents_sdk_conversation_session_keeps_every_turn(server):
    """The Agents SDK's session adds each turn's items to a conversation (the assistant's message
    comes back as output parts without an id) and sends the whole history as input."""
    import asyncio

    from agents import Agent, ModelSettings, OpenAIConversationsSession, Runner, set_tracing_disabled
    from agents.models.openai_responses import OpenAIResponsesModel
    from openai import AsyncOpenAI
    from pydantic import BaseModel

    class Verdict(BaseModel):
        answer: bool

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    agent = Agent(name="judge", model=OpenAIResponsesModel("demo", client), output_type=Verdict,
                  model_settings=ModelSettings(max_tokens=64))

    async def two_turns() -> tuple[list, list]:
        session = OpenAIConversationsSession(openai_client=client)
        first = await Runner.run(agent, "Is the sky blue?", session=session)
        second = await Runner.run(agent, "Is the sea blue?", session=session)
        return [first.final_output, second.final_output], await session.get_items()

    verdicts, items = asyncio.run(two_turns())
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert [item.get("role") for item in items] == ["user", "assistant", "user", "assistant"]
