"""Model lifecycle: damaged or missing model files and missing backend packages are reported at
start-up and by ``check``, answer 503 naming the model, and leave the rest of the server working."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest

from localai_runtime import Settings, demo_model
from localai_runtime.backends import BackendRegistry
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.conftest import REPO, live_server

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("configs")
    good = demo_model.write_demo_model(directory / "good.gguf")
    (directory / "damaged.gguf").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for backend in ("llama-cpp", "gpt4all"):
        (directory / f"{backend}.yaml").write_text(
            f"registration: {{model: good-{backend}, operations: [createCompletion]}}\n"
            f"local_settings: {{backend: {backend}, model_file: good.gguf}}\n"
            "---\n"
            f"registration: {{model: damaged-{backend}, operations: [createCompletion]}}\n"
            f"local_settings: {{backend: {backend}, model_file: damaged.gguf}}\n"
            "---\n"
            f"registration: {{model: missing-{backend}, operations: [createCompletion]}}\n"
            f"local_settings: {{backend: {backend}, model_file: missing.gguf, preload: true}}\n"
        )
    return directory


def test_check_reports_damaged_and_missing_files(configs):
    result = subprocess.run([sys.executable, "-m", "localai_runtime.cli", "check", "--configs", str(configs)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1
    for backend in ("llama-cpp", "gpt4all"):
        assert f"(model damaged-{backend}): cannot read the GGUF model {configs / 'damaged.gguf'}" in result.stderr
        assert f"(model missing-{backend}): model file not found: {configs / 'missing.gguf'}" in result.stderr
    assert "good-" not in result.stderr
    assert "6 unavailable" not in result.stdout and "4 unavailable" in result.stdout


@pytest.mark.parametrize("backend", ["llama-cpp", "gpt4all"])
def test_unavailable_models_answer_503_and_the_rest_works(built_spec, configs, backend):
    with live_server(built_spec, configs_dir=configs) as live:
        client = live.client()
        for model in (f"damaged-{backend}", f"missing-{backend}"):
            with pytest.raises(openai.InternalServerError) as raised:
                client.completions.create(model=model, prompt="x", max_tokens=2)
            assert raised.value.status_code == 503
            assert raised.value.param == "model" and f"'{model}' is unavailable" in raised.value.message
        assert client.completions.create(model=f"good-{backend}", prompt="x", max_tokens=2).choices[0].text
        with live.http() as http:
            assert http.get("/readyz").json()["status"] == "ready"


def test_a_missing_backend_package_fails_only_its_registrations(built_spec, configs):
    backends = BackendRegistry.from_entry_points()

    def not_installed():
        raise ModuleNotFoundError("No module named 'llama_cpp'", name="llama_cpp")

    backends.register("llama-cpp", not_installed)
    registrations = load_registrations(configs, RequestSchemas(built_spec), backends)
    llama = registrations.lookup("createCompletion", "good-llama-cpp")
    assert "pip install llama-cpp-python" in llama.problem
    assert registrations.lookup("createCompletion", "good-gpt4all").problem is None


def test_startup_objects_are_frozen_once_ready(built_spec):
    import gc

    before = gc.get_freeze_count()
    gc.disable()  # as `serve` starts (see test_serve_starts_with_the_cyclic_collector_off)
    try:
        with live_server(built_spec, configs_dir=None, freeze_startup_objects=True) as live, live.http() as http:
            assert http.get("/readyz").status_code == 200
            # The document, routes and validators built at start-up are out of the collector's way.
            assert gc.get_freeze_count() > before + 10_000
            assert gc.isenabled()  # and the collector runs again from now on
    finally:
        gc.enable()
        gc.unfreeze()


def test_serve_starts_with_the_cyclic_collector_off(monkeypatch, tmp_path):
    import gc

    from localai_runtime import cli

    seen = []
    monkeypatch.setattr(cli, "_serve", lambda settings: seen.append(gc.isenabled()))
    try:
        assert cli.main(["serve", "--configs", str(tmp_path), "--no-store"]) == 0
    finally:
        gc.enable()
    assert seen == [False]  # start-up builds everything without the collector's passes over it


def test_only_serve_freezes_startup_objects():
    from localai_runtime.cli import _settings, build_parser

    assert _settings(build_parser().parse_args(["serve"])).freeze_startup_objects
    assert not _settings(build_parser().parse_args(["check"])).freeze_startup_objects
    assert not Settings().freeze_startup_objects
