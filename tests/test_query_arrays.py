"""Array query parameters as the official SDKs send them: ``include[]=a&include[]=b`` (the
brackets spelling) is read as the document's ``include``, with the real openai client; the plain
spelling still works, and a bracketed name the operation has no array of is still refused.
"""

from __future__ import annotations

import openai
import pytest

from tests.conftest import live_server

ENCRYPTED = "reasoning.encrypted_content"


@pytest.fixture(scope="module")
def live(built_spec, tmp_path_factory):
    with live_server(built_spec, data_dir=tmp_path_factory.mktemp("store")) as server:
        yield server


@pytest.fixture(scope="module")
def stored(live):
    return live.client().responses.create(model="demo", input="Hi", max_output_tokens=16)


def test_the_sdk_reads_a_response_and_its_input_items_back_with_include(live, stored):
    client = live.client()
    assert client.responses.retrieve(stored.id, include=[ENCRYPTED]).to_dict() == stored.to_dict()
    items = client.responses.input_items.list(stored.id, include=[ENCRYPTED])
    assert [item.type for item in items.data] == ["message"]


def test_the_sdk_lists_conversation_items_with_include(live):
    client = live.client()
    conversation = client.conversations.create(items=[{"role": "user", "content": "Hello"}])
    items = client.conversations.items.list(conversation.id, include=[ENCRYPTED])
    assert [item.type for item in items.data] == ["message"]
    item = client.conversations.items.retrieve(items.data[0].id, conversation_id=conversation.id, include=[ENCRYPTED])
    assert item.id == items.data[0].id


def test_what_the_brackets_carry_is_weighed_as_include_itself(live, stored):
    with pytest.raises(openai.BadRequestError) as refused:
        live.client().responses.retrieve(stored.id, include=[ENCRYPTED, "message.output_text.logprobs"])
    assert refused.value.body["param"] == "include" and refused.value.body["code"] == "unsupported_parameter"
    with live.http() as http:
        invalid = http.get(f"/v1/responses/{stored.id}?include[]=no.such.thing")
        assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "include"


@pytest.mark.parametrize("query", [f"include={ENCRYPTED}", f"include[]={ENCRYPTED}", f"include%5b%5d={ENCRYPTED}",
                                   f"include%5B%5D={ENCRYPTED}&include={ENCRYPTED}"])
def test_every_spelling_of_include_is_accepted(live, stored, query):
    with live.http() as http:
        answer = http.get(f"/v1/responses/{stored.id}/input_items?{query}")
    assert answer.status_code == 200, answer.text
    assert [item["type"] for item in answer.json()["data"]] == ["message"]


def test_a_bracketed_name_of_no_array_parameter_is_still_unknown(live, stored):
    with live.http() as http:
        for query in ("limit[]=2", "includes[]=x"):
            answer = http.get(f"/v1/responses/{stored.id}/input_items?{query}")
            assert answer.status_code == 400, answer.text
            error = answer.json()["error"]
            assert error["code"] == "unknown_parameter" and error["param"] == query.split("=")[0], error
