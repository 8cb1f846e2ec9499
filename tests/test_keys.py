"""Scoped API keys from a keys file, over HTTP with the official client: models filtered and
out-of-scope models answered exactly like unknown ones, operations outside a key's scope 403,
rate and concurrency limits 429 with ``Retry-After`` and ``x-ratelimit-*``, flat keys still
unrestricted, and every mistake in the keys file named at start-up."""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import subprocess
import sys
import textwrap

import openai
import pytest

from localai_runtime.access.keys import hash_key, load_key_ring
from localai_runtime.errors import SpecError
from localai_runtime.settings import resource_dir
from tests.conftest import REPO, hold_instances, live_server, wait_until
from tests.test_routing import concrete

ASK = [{"role": "user", "content": "Hi"}]
KEYS = {"alice": "sk-alice", "bob": "sk-bob", "ops": "sk-ops", "chat": "sk-chat-only"}


def keys_file(directory):
    path = directory / "keys.yaml"
    path.write_text(textwrap.dedent(f"""
        keys:
          - name: alice
            sha256: {hash_key(KEYS["alice"])}
            models: ["demo*"]
            operations: [createChatCompletion, Models]
            requests_per_minute: 6
          - name: bob
            sha256: {hash_key(KEYS["bob"])}
            max_concurrent: 1
          - name: ops
            sha256: {hash_key(KEYS["ops"])}
            admin: true
          - name: chat
            sha256: {hash_key(KEYS["chat"])}
            operations: [createChatCompletion]
        """))
    return path


@pytest.fixture(scope="module")
def live(built_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    configs = directory / "configs"
    configs.mkdir()
    shutil.copy(resource_dir("configs") / "demo-llama-cpp.yaml", configs)
    private = (resource_dir("configs") / "demo-llama-cpp.yaml").read_text().replace("model: demo", "model: private")
    (configs / "private.yaml").write_text(private)
    with live_server(built_spec, configs_dir=configs, keys_file=keys_file(directory), api_keys=("sk-flat",)) as server:
        yield server


def test_hash_key_prints_the_sha256(tmp_path):
    printed = subprocess.run([sys.executable, "-m", "localai_runtime.cli", "hash-key"], input="sk-alice\n",
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    assert printed.returncode == 0 and printed.stdout.strip() == hash_key("sk-alice")
    assert hash_key("test") == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_a_key_sees_and_uses_only_its_models(live):
    alice = live.client(api_key=KEYS["alice"])
    assert sorted(model.id for model in alice.models.list()) == ["demo"]
    assert alice.chat.completions.create(model="demo", messages=ASK, max_tokens=2).usage.completion_tokens == 2
    with pytest.raises(openai.NotFoundError) as hidden:
        alice.chat.completions.create(model="private", messages=ASK, max_tokens=2)
    with pytest.raises(openai.NotFoundError) as unknown:
        alice.chat.completions.create(model="nonexistent", messages=ASK, max_tokens=2)
    assert hidden.value.body == {**unknown.value.body, "message": unknown.value.body["message"].replace(
        "nonexistent", "private")}  # no existence leak
    with pytest.raises(openai.NotFoundError):
        alice.models.retrieve("private")
    flat = live.client(api_key="sk-flat")
    assert sorted(model.id for model in flat.models.list()) == ["demo", "private"]  # unrestricted


def test_an_operation_outside_the_scope_is_403(live):
    alice = live.client(api_key=KEYS["alice"])
    with pytest.raises(openai.PermissionDeniedError) as denied:
        alice.embeddings.create(model="demo", input="hi")
    assert "alice" in denied.value.message and "createEmbedding" in denied.value.message
    assert sk_not_leaked(denied.value.response)
    with live.http(headers={"Authorization": f"Bearer {KEYS['alice']}"}) as http:
        assert http.get("/v1/localai/registrations").status_code == 403  # not admin
    with live.http(headers={"Authorization": f"Bearer {KEYS['ops']}"}) as http:
        assert {entry["model"] for entry in http.get("/v1/localai/registrations").json()["data"]} == {
            "demo", "private"}


def test_a_refusal_is_logged_with_the_key_s_name_never_the_key(live, caplog):
    alice = live.client(api_key=KEYS["alice"])
    with caplog.at_level(logging.INFO, logger="localai_runtime.errors"):
        with pytest.raises(openai.PermissionDeniedError):
            alice.embeddings.create(model="demo", input="hi")
        with pytest.raises(openai.NotFoundError):
            alice.chat.completions.create(model="private", messages=ASK, max_tokens=2)  # outside its models
        with pytest.raises(openai.AuthenticationError):
            live.client(api_key="sk-wrong").models.list()
    lines = [record.getMessage() for record in caplog.records if record.name == "localai_runtime.errors"]
    assert lines[0].startswith("createEmbedding -> 403 param=None code=insufficient_permissions key=alice: ")
    assert lines[1].startswith("createChatCompletion -> 404 param=model code=model_not_found key=alice: ")
    assert lines[2].startswith("listModels -> 401 param=None code=invalid_api_key: ")  # no key matched
    assert len(lines) == 3 and all(record.levelno == logging.INFO for record in caplog.records
                                   if record.name == "localai_runtime.errors")
    assert not any(key in caplog.text or hash_key(key) in caplog.text for key in [*KEYS.values(), "sk-wrong"])


def sk_not_leaked(response) -> bool:
    text = response.text + str(response.headers)
    return not any(key in text or hash_key(key) in text for key in KEYS.values())


def test_every_secured_operation_checks_the_key_scope(live, built_spec):
    with live.http(headers={"Authorization": f"Bearer {KEYS['chat']}"}) as http:
        for op in built_spec.operations.values():
            if op.operation_id in ("getRoot", "getHealth", "getReadiness", "getMetrics", "createChatCompletion"):
                continue
            response = http.request(op.method.upper(), concrete(op.path))
            assert response.status_code == 403, (op.operation_id, response.status_code, response.text[:200])
            if built_spec.owners.get(op.operation_id) == "anthropic":  # Anthropic's envelope on its routes
                assert response.json()["error"]["type"] == "permission_error"
            else:
                assert response.json()["error"]["code"] == "insufficient_permissions"


def test_over_the_rate_is_429_with_retry_after_and_ratelimit_headers(built_spec, tmp_path):
    with live_server(built_spec, keys_file=keys_file(tmp_path)) as fresh:
        alice = fresh.client(api_key=KEYS["alice"])
        for _ in range(6):
            answered = alice.models.with_raw_response.list()
        assert answered.headers["x-ratelimit-limit-requests"] == "6"
        assert answered.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(openai.RateLimitError) as limited:
            alice.models.list()
        headers = limited.value.response.headers
        assert 1 <= int(headers["retry-after"]) <= 60 and headers["x-ratelimit-remaining-requests"] == "0"
        assert fresh.client(api_key=KEYS["bob"]).models.list().data  # other keys are not affected


def test_streams_count_against_concurrency_until_they_end(live):
    bob = live.client(api_key=KEYS["bob"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        with hold_instances(live, "createChatCompletion", "demo"):
            first = pool.submit(lambda: list(bob.chat.completions.create(
                model="demo", messages=ASK, max_tokens=2, stream=True)))
            wait_until(lambda: live.app.runtime.pool(live.app.runtime.registrations.lookup(
                "createChatCompletion", "demo")).waiting == 1, "bob's stream to wait")
            with pytest.raises(openai.RateLimitError, match="concurrent"):
                bob.models.list()
        assert len(first.result(timeout=60)) >= 2

    def admitted() -> bool:
        try:
            return bool(bob.models.list().data)
        except openai.RateLimitError:  # the server may not have closed the stream's request yet
            return False

    wait_until(admitted, "bob to be admitted once his stream has ended", timeout=10)


@pytest.mark.parametrize(("text", "message"), [
    ("keys: [", r"keys\.yaml: cannot read the keys file"),
    ("keys:\n  - name: a\n    sha256: abc\n", r"keys\[0\]\.sha256: must be the 64 hex digits of a sha256"),
    ("keys:\n  - name: a\n    sha256: " + "ab" * 32 + "\n    operations: [createNothing]\n",
     r"keys\[0\]\.operations\[0\]: 'createNothing' is neither an operationId nor a tag"),
    ("keys:\n  - {name: a, sha256: " + "ab" * 32 + "}\n  - {name: a, sha256: " + "cd" * 32 + "}\n",
     r"keys\[1\]\.name: 'a' is used twice"),
    ("keys:\n  - {name: a, sha256: " + "ab" * 32 + ", max_concurrent: 0}\n", r"keys\[0\]\.max_concurrent"),
    ("keys:\n  - {name: a, sha256: " + "ab" * 32 + ", colour: red}\n", r"Additional properties"),
])
def test_mistakes_in_the_keys_file_are_named(built_spec, tmp_path, text, message):
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_key_ring(path, (), built_spec.operations)
