"""Which models stay loaded: ``idle_unload_seconds`` per registration and ``--max-loaded-models``
server-wide, watched through ``GET /v1/localai/registrations`` with the official client beside."""

from __future__ import annotations

import concurrent.futures
import textwrap
import time

import openai
import pytest

from localai_runtime.errors import SpecError
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.conftest import hold_instances, live_server, wait_until
from tests.fake_backend import registry

ASK = [{"role": "user", "content": "Hi"}]


def two_models(directory, **extra) -> None:
    """Registrations ``a`` and ``b`` of the demo model, with ``extra`` local settings for ``a``."""
    settings = "".join(f", {key}: {value}" for key, value in extra.items())
    (directory / "models.yaml").write_text(textwrap.dedent(f"""
        registration: {{model: a, operations: [createChatCompletion]}}
        local_settings: {{backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 512{settings}}}
        ---
        registration: {{model: b, operations: [createChatCompletion]}}
        local_settings: {{backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 512}}
        """))


def states(live) -> dict[str, dict]:
    with live.http() as http:
        return {entry["model"]: entry for entry in http.get("/v1/localai/registrations").json()["data"]}


def ask(client, model: str):
    return client.chat.completions.create(model=model, messages=ASK, max_tokens=2)


def test_a_model_in_use_is_never_unloaded_to_make_room(built_spec, tmp_path):
    two_models(tmp_path)
    with live_server(built_spec, configs_dir=tmp_path, max_loaded_models=1) as live, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        client = live.client()
        ask(client, "a")
        with hold_instances(live, "createChatCompletion", "a"):  # a request of a's in flight
            for_b = pool.submit(ask, client, "b")
            wait_until(lambda: states(live)["b"]["in_flight"] == 1, "b's request to wait for room")
            time.sleep(0.3)
            now = states(live)
            assert (now["a"]["state"], now["a"]["in_flight"], now["b"]["state"]) == ("loaded", 1, "unloaded")
            assert not for_b.done()
        assert for_b.result(timeout=60).usage.completion_tokens == 2  # a went idle: unloaded, then b loaded
        now = states(live)
        assert (now["a"]["state"], now["b"]["state"]) == ("unloaded", "loaded")
        assert now["b"]["idle_since"] is not None and now["a"]["idle_since"] is None


def test_alternating_models_under_a_cap_of_one_are_all_served(built_spec, tmp_path):
    two_models(tmp_path)
    with live_server(built_spec, configs_dir=tmp_path, max_loaded_models=1) as live:
        client = live.client()
        for i in range(20):
            assert ask(client, "ab"[i % 2]).usage.completion_tokens == 2
            assert sum(entry["loaded"] for entry in states(live).values()) == 1
        with live.http() as http:
            metrics = http.get("/metrics").text
        assert 'localai_model_unloads_total{model_name="a",reason="room"} 10.0' in metrics


def test_an_idle_model_is_unloaded_after_its_idle_period(built_spec, tmp_path):
    two_models(tmp_path, idle_unload_seconds=0.5)
    with live_server(built_spec, configs_dir=tmp_path) as live:
        client = live.client()
        ask(client, "a")
        ask(client, "b")
        assert states(live)["a"]["state"] == "loaded" and states(live)["a"]["idle_since"] is not None
        wait_until(lambda: states(live)["a"]["state"] == "unloaded", "a to unload", timeout=10)
        assert states(live)["b"]["state"] == "loaded"  # no idle period: kept
        assert ask(client, "a").usage.completion_tokens == 2  # loads again on the next request


def test_a_cap_taken_by_pinned_models_fails_fast_naming_why(built_spec, tmp_path):
    two_models(tmp_path, preload="true")
    with live_server(built_spec, configs_dir=tmp_path, max_loaded_models=1) as live:
        assert states(live)["a"]["state"] == "loaded"
        with pytest.raises(openai.InternalServerError) as refused:
            ask(live.client(), "b")
        assert refused.value.status_code == 503 and "pinned with preload" in refused.value.message
        assert ask(live.client(), "a").usage.completion_tokens == 2


def test_idle_unload_seconds_is_checked_at_start_up(built_spec, tmp_path):
    (tmp_path / "bad.yaml").write_text(textwrap.dedent("""
        registration: {model: m, operations: [createChatCompletion]}
        local_settings: {backend: echo, idle_unload_seconds: -1}
        """))
    with pytest.raises(SpecError, match=r"local_settings\.idle_unload_seconds"):
        load_registrations(tmp_path, RequestSchemas(built_spec), registry())


def test_an_unavailable_model_never_takes_a_loaded_model_place(built_spec, tmp_path):
    two_models(tmp_path)
    (tmp_path / "broken.yaml").write_text(textwrap.dedent("""
        registration: {model: broken, operations: [createChatCompletion]}
        local_settings: {backend: llama-cpp, model_file: missing.gguf}
        """))
    with live_server(built_spec, configs_dir=tmp_path, max_loaded_models=1) as live:
        client = live.client(timeout=30)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as unavailable:
                ask(client, "broken")
            assert unavailable.value.status_code == 503
        assert ask(client, "a").usage.completion_tokens == 2  # not left waiting for the broken one's place
        assert ask(client, "b").usage.completion_tokens == 2
