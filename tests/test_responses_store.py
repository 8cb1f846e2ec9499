"""The response store as a server uses it: what survives a restart, the SQLite file's journal
mode, ``store: false``, a server started without a store, a store that cannot be opened or that
fails while serving, and retention, with the official openai client against live servers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time

import openai
import pytest

from tests.conftest import REPO, free_port, live_server

JSON_ANSWER = {"format": {"type": "json_schema", "name": "a", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
    "additionalProperties": False}}}
"""Makes the demo model's answer short and ``completed`` (its plain text never ends)."""
SHORT = {"model": "demo", "input": "Hi", "max_output_tokens": 16}
"""A fast request: the demo model stops at the limit (``incomplete``)."""
CLI = [sys.executable, "-m", "localai_runtime.cli"]


def error_of(answer, status: int) -> dict:
    """The error of an HTTP answer, after checking it is ``status`` in OpenAI's error envelope."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def live(built_spec, data_dir):
    with live_server(built_spec, data_dir=data_dir) as live:
        yield live


def test_responses_and_conversations_survive_a_restart(built_spec, tmp_path, response_schemas):
    with live_server(built_spec, data_dir=tmp_path) as first_server, first_server.http() as http:
        created = http.post("/v1/responses", json={"model": "demo", "input": "Is the sky blue?", "text": JSON_ANSWER})
        assert created.status_code == 200, created.text
        first = created.json()
        assert first["status"] == "completed" and first["store"] is True
        client = first_server.client()
        conversation = client.conversations.create(metadata={"k": "v"}, items=[{"role": "user", "content": "Hello"}])
        client.responses.create(model="demo", input="Yes?", conversation=conversation.id, text=JSON_ANSWER)
        items = client.conversations.items.list(conversation.id, order="asc").to_dict()
        assert len(items["data"]) == 3

    with live_server(built_spec, data_dir=tmp_path) as second_server, second_server.http() as http:
        retrieved = http.get(f"/v1/responses/{first['id']}")
        assert retrieved.status_code == 200, retrieved.text
        assert retrieved.json() == first
        response_schemas.check("Response", retrieved.json())

        client = second_server.client()
        follow_up = client.responses.create(model="demo", input="Are you sure?", previous_response_id=first["id"],
                                            text=JSON_ANSWER)
        assert follow_up.status == "completed" and follow_up.previous_response_id == first["id"]
        usage = first["usage"]
        assert follow_up.usage.input_tokens >= usage["input_tokens"] + usage["output_tokens"]

        assert client.conversations.retrieve(conversation.id).to_dict() == conversation.to_dict()
        assert client.conversations.items.list(conversation.id, order="asc").to_dict() == items


def test_the_store_is_a_sqlite_file_in_wal_mode(live, data_dir):
    live.client().responses.create(**SHORT)
    with sqlite3.connect(data_dir / "localai.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_only_stored_responses_can_be_retrieved(live):
    client = live.client()
    kept = client.responses.create(**SHORT)
    assert kept.store is True
    assert client.responses.retrieve(kept.id).to_dict() == kept.to_dict()

    unkept = client.responses.create(**SHORT, store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve(unkept.id)
    assert unkept.id in missing.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(**SHORT, previous_response_id=unkept.id)
    assert missing.value.param == "previous_response_id" and unkept.id in missing.value.message


def test_a_deleted_response_is_gone(live):
    client = live.client()
    kept = client.responses.create(**SHORT)
    client.responses.delete(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(kept.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(kept.id)


def test_without_a_store_nothing_is_kept_and_what_needs_it_is_400(built_spec, tmp_path):
    with live_server(built_spec, store=False, data_dir=tmp_path) as live, live.http() as http:
        for name, value in [("store", True), ("previous_response_id", "resp_x"), ("background", True),
                            ("conversation", "conv_x")]:
            error = error_of(http.post("/v1/responses", json={**SHORT, name: value}), 400)
            assert error["param"] == name and "store" in error["message"], error

        served = http.post("/v1/responses", json=SHORT)
        assert served.status_code == 200, served.text
        assert served.json()["store"] is False
        assert http.post("/v1/responses", json={**SHORT, "store": False}).json()["store"] is False

        for method, path in [("POST", "/v1/conversations"), ("GET", "/v1/conversations/conv_x"),
                             ("POST", "/v1/conversations/conv_x"), ("DELETE", "/v1/conversations/conv_x"),
                             ("GET", "/v1/conversations/conv_x/items"),
                             ("GET", "/v1/conversations/conv_x/items/msg_x")]:
            body = {"metadata": {}} if method == "POST" else None
            error = error_of(http.request(method, path, json=body), 400)
            assert "store" in error["message"] and "off" in error["message"], (method, path, error)
        error = error_of(http.get(f"/v1/responses/{served.json()['id']}"), 400)
        assert "not stored" in error["message"]
    assert not (tmp_path / "localai.db").exists()


def test_check_and_serve_name_a_data_dir_that_cannot_be_opened(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    data_dir = blocker / "data"
    checked = subprocess.run([*CLI, "check", "--data-dir", str(data_dir)], capture_output=True, text=True,
                             timeout=120, cwd=REPO)
    assert checked.returncode == 2, checked.stderr
    assert "localai-runtime: error: cannot open the response store" in checked.stderr
    assert str(data_dir) in checked.stderr
    served = subprocess.run([*CLI, "serve", "--port", str(free_port()), "--data-dir", str(data_dir)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert served.returncode == 2, served.stderr
    assert "localai-runtime: error: cannot open the response store" in served.stderr
    assert str(data_dir) in served.stderr
    assert not data_dir.exists()

    without = subprocess.run([*CLI, "check", "--data-dir", str(data_dir), "--no-store"], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
    assert without.returncode == 0, without.stderr
    assert "store off" in without.stdout


def test_a_store_that_fails_while_serving_answers_503_and_unstored_requests_go_on(built_spec, tmp_path):
    with live_server(built_spec, data_dir=tmp_path) as live, live.http() as http:
        kept = http.post("/v1/responses", json=SHORT).json()
        conversation = live.client().conversations.create()
        asyncio.run_coroutine_threadsafe(live.app.runtime.store.close(), live.loop).result(timeout=30)

        for method, path, body in [
            ("GET", f"/v1/responses/{kept['id']}", None),
            ("DELETE", f"/v1/responses/{kept['id']}", None),
            ("GET", f"/v1/responses/{kept['id']}/input_items", None),
            ("POST", "/v1/responses", SHORT),
            ("POST", "/v1/responses", {**SHORT, "previous_response_id": kept["id"]}),
            ("POST", "/v1/responses", {**SHORT, "conversation": conversation.id}),
            ("POST", "/v1/conversations", {}),
            ("GET", f"/v1/conversations/{conversation.id}", None),
            ("GET", f"/v1/conversations/{conversation.id}/items", None),
        ]:
            error = error_of(http.request(method, path, json=body), 503)
            assert "store" in error["message"], (method, path, error)

        with pytest.raises(openai.InternalServerError) as raised:
            live.client().responses.retrieve(kept["id"])
        assert raised.value.status_code == 503

        served = http.post("/v1/responses", json={**SHORT, "store": False})
        assert served.status_code == 200, served.text
        assert served.json()["status"] == "incomplete" and served.json()["store"] is False
        assert http.get("/readyz").status_code == 200


def test_retention_deletes_old_responses_and_conversations_at_start_up(built_spec, tmp_path):
    with live_server(built_spec, data_dir=tmp_path) as live:
        client = live.client()
        old = client.responses.create(**SHORT)
        old_conversation = client.conversations.create(items=[{"role": "user", "content": "old"}])
    time.sleep(1)  # older than the retention period below

    with live_server(built_spec, data_dir=tmp_path, retention_days=1e-5) as live:  # 0.864 s
        client = live.client()
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(old.id)
        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve(old_conversation.id)
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.list(old_conversation.id)
        new = client.responses.create(**SHORT)  # the next purge is an hour away
        assert client.responses.retrieve(new.id).id == new.id
    with sqlite3.connect(tmp_path / "localai.db") as db:
        assert db.execute("SELECT count(*) FROM localai_conversation_items").fetchone()[0] == 0
        assert db.execute("SELECT id FROM localai_responses").fetchall() == [(new.id,)]
