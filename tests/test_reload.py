"""Hot reload: a valid change is picked up while a stream runs across it; an invalid registration,
patch or keys file changes nothing and says why; a key removed from the watched keys file stops
working; broken YAML thrown at the reload never breaks the server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localai_runtime.access.keys import hash_key
from localai_runtime.settings import resource_dir
from tests.conftest import REPO, free_port, hold_instances, live_server, wait_until

ASK = [{"role": "user", "content": "Hi"}]
EXTRA = """
registration: {model: extra, operations: [createChatCompletion]}
local_settings: {backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 512}
"""


def configs_in(directory):
    configs = directory / "configs"
    configs.mkdir()
    shutil.copy(resource_dir("configs") / "demo-llama-cpp.yaml", configs)
    return configs


def reload(live, **headers) -> httpx.Response:
    with live.http(headers=headers) as http:
        return http.post("/v1/localai/reload")


def readiness(live) -> dict:
    with live.http() as http:
        return http.get("/readyz").json()


def test_a_valid_change_is_picked_up_while_a_stream_runs_across_it(built_spec, tmp_path):
    configs = configs_in(tmp_path)
    with live_server(built_spec, configs_dir=configs) as live, concurrent.futures.ThreadPoolExecutor(1) as pool:
        client = live.client()
        client.chat.completions.create(model="demo", messages=ASK, max_tokens=2)  # demo is loaded
        before = readiness(live)["config_hash"]
        with hold_instances(live, "createChatCompletion", "demo"):
            stream = pool.submit(lambda: list(client.chat.completions.create(
                model="demo", messages=ASK, max_tokens=8, stream=True)))
            (configs / "extra.yaml").write_text(textwrap.dedent(EXTRA))
            answer = reload(live)
            assert answer.status_code == 200, answer.text
            diff = answer.json()
            assert diff["added"] == ["extra (extra.yaml#0)"] and diff["removed"] == [] == diff["changed"]
            assert "demo (demo-llama-cpp.yaml#0)" in diff["unchanged"] and diff["config_hash"] != before
        chunks = stream.result(timeout=60)  # the stream waiting across the reload was served
        assert sum(bool(c.choices and c.choices[0].delta.content) for c in chunks) >= 1
        assert client.chat.completions.create(model="extra", messages=ASK, max_tokens=2).usage.completion_tokens == 2
        with live.http() as http:
            states = {e["source"]: e["state"] for e in http.get("/v1/localai/registrations").json()["data"]}
        assert states["demo-llama-cpp.yaml#0"] == "loaded"  # unchanged: kept its loaded model
        assert readiness(live)["config_hash"] == diff["config_hash"]


def test_changed_and_removed_registrations(built_spec, tmp_path):
    configs = configs_in(tmp_path)
    (configs / "extra.yaml").write_text(textwrap.dedent(EXTRA))
    with live_server(built_spec, configs_dir=configs) as live:
        client = live.client()
        client.chat.completions.create(model="extra", messages=ASK, max_tokens=2)
        (configs / "extra.yaml").write_text(textwrap.dedent(EXTRA).replace("context_size: 512", "context_size: 1024"))
        assert reload(live).json()["changed"] == ["extra (extra.yaml#0)"]
        assert client.chat.completions.create(model="extra", messages=ASK, max_tokens=2).usage.completion_tokens == 2
        (configs / "extra.yaml").unlink()
        assert reload(live).json()["removed"] == ["extra (extra.yaml#0)"]
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="extra", messages=ASK, max_tokens=2)
        with live.http() as http:  # the gauges follow the registrations, once the removed pool closed
            wait_until(lambda: 'localai_model_loaded{model_name="extra"}' not in http.get("/metrics").text,
                       "/metrics no longer lists the removed model")
            assert 'localai_model_loaded{model_name="demo"}' in http.get("/metrics").text


@pytest.mark.parametrize(("name", "text", "named"), [
    ("configs/broken.yaml", "registration: {model: x, operations: [createChatCompletion]\n", "broken.yaml"),
    ("configs/bad.yaml", "registration: {model: x, operations: [nope]}\nlocal_settings: {backend: llama-cpp}\n",
     "unknown operationId 'nope'"),
    ("patches/99-bad.yaml", "- op: replace\n  path: /no/such/place\n  value: 1\n", "99-bad.yaml"),
])
def test_an_invalid_change_leaves_serving_unchanged_and_says_why(built_spec, tmp_path, name, text, named):
    configs = configs_in(tmp_path)
    patches = tmp_path / "patches"
    shutil.copytree(resource_dir("patches"), patches)
    with live_server(built_spec, configs_dir=configs, patches_dir=patches) as live:
        before = readiness(live)
        (tmp_path / name).write_text(text)
        answer = reload(live)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_configuration"
        assert named in answer.json()["error"]["message"]
        after = readiness(live)
        assert after["config_hash"] == before["config_hash"] and named in after["last_reload_error"]
        assert live.client().chat.completions.create(model="demo", messages=ASK, max_tokens=2).choices
        with live.http() as http:
            metrics = http.get("/metrics").text
        assert 'localai_config_reloads_total{outcome="failed"} 1.0' in metrics
        assert f'localai_config_info{{config_hash="{before["config_hash"]}"}} 1.0' in metrics


def test_a_key_removed_from_the_watched_file_stops_working(built_spec, tmp_path):
    keys = tmp_path / "keys.yaml"
    entry = "  - {{name: {name}, sha256: {digest}}}\n"
    keys.write_text("keys:\n" + entry.format(name="alice", digest=hash_key("sk-alice"))
                    + entry.format(name="bob", digest=hash_key("sk-bob")))
    with live_server(built_spec, keys_file=keys, watch=True) as live:
        assert live.client(api_key="sk-alice").models.list().data
        keys.write_text("keys:\n" + entry.format(name="bob", digest=hash_key("sk-bob")))

        def revoked() -> bool:
            try:
                live.client(api_key="sk-alice").models.list()
            except openai.AuthenticationError:
                return True
            return False

        wait_until(revoked, "alice's key to be revoked", timeout=15)
        assert live.client(api_key="sk-bob").models.list().data


@pytest.fixture(scope="module")
def fuzzed(built_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzzed")
    keys = directory / "keys.yaml"
    keys.write_text(f"keys:\n  - {{name: ops, sha256: {hash_key('sk-ops')}, admin: true}}\n")
    with live_server(built_spec, keys_file=keys) as live:
        yield live, keys


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.sampled_from([
    "keys: [", "keys:\n  - name: a\n", "keys: {}", "- 1\n- 2", "keys:\n  - {name: a, sha256: 12}", "\x00\xff",
    "keys:\n  - {name: ops, sha256: " + hash_key("sk-ops") + ", admin: true, models: 7}\n"])))
def test_broken_keys_files_never_break_the_reload_or_the_server(fuzzed, text):
    live, keys = fuzzed
    good = keys.read_text()
    keys.write_text(text, errors="surrogateescape")
    try:
        answer = reload(live, Authorization="Bearer sk-ops")
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400:
            assert answer.json()["error"]["code"] == "invalid_configuration"
    finally:  # back to the good file, reloaded from inside (the fuzzed keys may not let ops in)
        keys.write_text(good)
        asyncio.run_coroutine_threadsafe(live.app.reload("test"), live.loop).result(timeout=60)
    assert live.client(api_key="sk-ops").models.list().data


def test_sighup_reloads_a_server_started_with_no_watch(tmp_path):
    """The real command, as an operator runs it: with --no-watch a changed file waits for SIGHUP,
    which reloads it, and the server lives on."""
    configs = configs_in(tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "localai_runtime.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--configs", str(configs), "--no-watch", "--no-store"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)

    def models() -> set[str]:
        assert process.poll() is None, f"the server exited with {process.returncode}"
        return {model["id"] for model in httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()["data"]}

    def ready() -> bool:
        assert process.poll() is None, "the server exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, "the server is ready", timeout=120)
        assert models() == {"demo"}
        (configs / "extra.yaml").write_text(textwrap.dedent(EXTRA))
        time.sleep(1.5)  # a watching server would have reloaded by now (its debounce is 0.2 s)
        assert models() == {"demo"}
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: "extra" in models(), "SIGHUP reloaded the configuration")
        assert process.poll() is None and models() == {"demo", "extra"}
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "ok"}
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "reload (SIGHUP) applied" in output and "Traceback" not in output, output
