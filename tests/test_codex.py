"""Codex CLI (``@openai/codex`` from npm, ``tests/node``), unchanged, on the real model (Gemma 3
270M) over the Responses API: ``codex exec`` with a custom model provider (``wire_api =
"responses"``) in a temporary ``CODEX_HOME``, no login, no internet, no flags of its own beyond
the non-interactive ones. Every request Codex sends is recorded (``tests/request_log.py``) and
none may be refused.

Codex's first request holds about 40 KB of instructions and tools (function tools, a
``namespace`` of sub-agent functions and the hosted ``web_search``; see
``tests/fixtures/codex/first_request.json``), so its registration has a larger context per slot
and drops hosted tools by policy. Two operator settings stand in for what a 270M base model cannot
do by itself. It never ends a free-text turn (Codex treats ``response.incomplete`` as a failed
turn) and, given tools, starts calls it does not finish within a bounded answer: the first test's
registration answers without tools (``tool_choice: none``; they are still validated and dropped
as the policy says) under a JSON schema (``text.format``), which ends the turn. It does not choose
a tool by itself either: the second test's registration forces Codex's shell tool
(``tool_choice`` naming it) with every tool in the prompt. That registration forces every turn,
so the test stops Codex once its next request (carrying the call's output) has been answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess

import pytest
import yaml

from tests.conftest import REPO, wait_until
from tests.request_log import logged_server, request_log  # noqa: F401  (request_log: the fixture `log`)

CODEX = REPO / "tests" / "node" / "node_modules" / ".bin" / "codex"
ANSWER = {"type": "json_schema", "name": "answer", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"type": "string", "maxLength": 80}},
    "required": ["answer"], "additionalProperties": False}}


def codex_registrations() -> list[dict]:
    """Gemma for Codex: the example's settings with a context of 32768 tokens in one slot."""
    [example] = [entry for entry in yaml.safe_load((REPO / "configs" / "examples" / "gemma3-270m.yaml").read_text())
                 if "createResponse" in entry["registration"]["operations"]]
    settings = {**example["local_settings"], "context_size": 32768, "parallel": 1}
    answers = {"registration": {"model": "gemma3-270m", "operations": ["createResponse"]},
               "local_settings": settings, "policy": {"hosted_tools": "drop"},
               "request_defaults": {"temperature": 0, "max_output_tokens": 200},
               "request_overrides": {"text": {"format": ANSWER}, "tool_choice": "none"}}
    shell = {**answers, "registration": {"model": "gemma3-270m-shell", "operations": ["createResponse"]},
             "request_overrides": {"tool_choice": {"type": "function", "name": "exec_command"}}}
    return [answers, shell]


@pytest.fixture(scope="module")
def logged(built_spec, tmp_path_factory):
    with logged_server(built_spec, tmp_path_factory.mktemp("configs"), {"codex.yaml": codex_registrations()}) as logged:
        yield logged


@pytest.fixture
def codex(logged, tmp_path):
    """Starts ``codex exec --json`` on a prompt for a model; yields the function doing it."""
    live, _ = logged
    home, work = tmp_path / "codex-home", tmp_path / "project"
    home.mkdir()
    work.mkdir()
    (work / "notes.txt").write_text("hello\n")

    def start(model: str, prompt: str) -> subprocess.Popen:
        (home / "config.toml").write_text(
            f'model = "{model}"\nmodel_provider = "localai"\ncheck_for_update_on_startup = false\n'
            f'[model_providers.localai]\nname = "localai-runtime"\nbase_url = "{live.url}/v1"\n'
            'wire_api = "responses"\nenv_key = "LOCALAI_API_KEY"\n'
            # Errors are not retried (every refusal shows), and a cold 40 KB prompt may take a while.
            'request_max_retries = 0\nstream_max_retries = 0\nstream_idle_timeout_ms = 900000\n')
        return subprocess.Popen([str(CODEX), "exec", "--json", "--ephemeral", "--skip-git-repo-check",
                                 "-C", str(work), prompt], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "CODEX_HOME": str(home), "LOCALAI_API_KEY": "unused"})

    started: list[subprocess.Popen] = []
    yield lambda model, prompt: started.append(start(model, prompt)) or started[-1]
    for process in started:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """Kills Codex: its node launcher and the binary it runs (one process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_codex_runs_a_turn_to_completion(codex, log):
    process = codex("gemma3-270m", "Reply with the single word OK.")
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    seen = events(stdout)
    assert seen[-1]["type"] == "turn.completed", seen[-3:]
    messages = [event["item"]["text"] for event in seen
                if event["type"] == "item.completed" and event["item"]["type"] == "agent_message"]
    assert messages and isinstance(json.loads(messages[-1])["answer"], str)
    sent = log.posts("/v1/responses")
    assert sent and all(exchange.status == 200 for exchange in sent)
    first = sent[0].body
    assert first["stream"] is True and first["store"] is False and len(json.dumps(first)) > 30_000
    kinds = {tool["type"] for tool in first["tools"]}
    assert {"function", "namespace", "web_search"} <= kinds  # what Codex sends, all of it served
    dropped = sent[0].answer_headers["x-localai-dropped-fields"]
    assert "(web_search)" in dropped


def test_codex_executes_the_call_it_receives(codex, log):
    process = codex("gemma3-270m-shell", 'Call exec_command with {"cmd": "ls"}.')

    def answered_twice() -> bool:  # the second request's body is read and its answer has begun
        sent = log.posts("/v1/responses")
        return len(sent) >= 2 and sent[1].status != 0
    wait_until(lambda: answered_twice() or process.poll() is not None, "Codex sends its next request", timeout=600)
    stop(process)
    stdout, stderr = process.communicate(timeout=60)
    sent = log.posts("/v1/responses")
    assert len(sent) >= 2, (stdout[-3000:], stderr[-2000:])
    first, second = sent[:2]
    assert first.status == 200, (first.error, stderr[-2000:])
    [call] = [item for item in second.body["input"] if item.get("type") == "function_call"]
    assert call["name"] == "exec_command" and isinstance(json.loads(call["arguments"])["cmd"], str)
    [output] = [item for item in second.body["input"] if item.get("type") == "function_call_output"]
    assert output["call_id"] == call["call_id"] and "Process exited with code" in output["output"]
    executed = [event["item"] for event in events(stdout)
                if event["type"] == "item.completed" and event["item"]["type"] == "command_execution"]
    assert executed and executed[0]["status"] in ("completed", "failed")
    assert second.body["input"][:len(first.body["input"])] == first.body["input"]  # the same prefix, then the call
