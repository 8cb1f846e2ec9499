"""The localai-runtime command: spec, check and serve, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import yaml

from tests.conftest import REPO, free_port

CLI = [sys.executable, "-m", "localai_runtime.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_spec_prints_the_patched_document_as_json_or_yaml():
    as_json = json.loads(run("spec").stdout)
    as_yaml = yaml.safe_load(run("spec", "--format", "yaml").stdout)
    assert as_json == as_yaml
    assert as_json["info"]["title"] == "OpenAI API (served by localai-runtime)"
    assert "/healthz" in as_json["paths"] and "/v1/messages" not in as_json["paths"]
    anthropic = json.loads(run("spec", "--document", "anthropic").stdout)
    assert anthropic["info"]["title"] == "Anthropic API (served by localai-runtime)"
    assert "/v1/messages?beta=true" in anthropic["paths"] and "Message" in anthropic["components"]["schemas"]
    unknown = run("spec", "--document", "klingon")
    assert unknown.returncode == 2 and "no document named 'klingon'" in unknown.stderr


def test_check_passes_on_the_shipped_files():
    result = run("check")
    assert result.returncode == 0, result.stderr
    assert "383 operations" in result.stdout  # OpenAI's 271, ours 8, Anthropic's 104


def test_check_fails_with_the_message_start_up_would_give(tmp_path):
    (tmp_path / "10-bad.yaml").write_text("# breaks on purpose\n- op: remove\n  path: /components/schemas/NoSuchSchema\n")
    result = run("check", "--patches", str(tmp_path))
    assert result.returncode == 2
    assert "10-bad.yaml: operation 0 (remove /components/schemas/NoSuchSchema): path not found" in result.stderr
    served = subprocess.run([*CLI, "serve", "--patches", str(tmp_path), "--port", str(free_port())],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert served.returncode == 2
    assert "10-bad.yaml: operation 0" in served.stderr


def test_serve_starts_on_loopback_and_answers():
    port = free_port()
    env = {**os.environ, "LOCALAI_API_KEYS": "k1"}
    process = subprocess.Popen([*CLI, "serve", "--port", str(port)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert response.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why it stopped
    assert process.returncode in (0, -15), output
    assert "Traceback" not in output


def test_demo_model_writes_a_deterministic_gguf(tmp_path):
    first, second = tmp_path / "a.gguf", tmp_path / "b.gguf"
    assert run("demo-model", str(first)).returncode == 0
    assert run("demo-model", str(second)).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes()[:4] == b"GGUF"
