"""Start-up and per-request overhead of the spec-driven app (issue: foundation).

Prints:
- start-up: process start to a ready ``/healthz`` for ``localai-runtime serve`` with the full
  OpenAI document, with a cold parse cache and a warm one (median of a few runs);
- routing + validation: in-process ASGI calls of ``POST /v1/chat/completions`` through the
  whole connexion stack (routing, auth, 3.1 body validation, handler), with a trivial handler
  so that only the server's own work is measured; and a 501 operation for comparison.

Figures only; nothing here asserts a time.  Usage: python bench/foundation.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHAT_BODY = json.dumps({
    "model": "demo",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello in three languages."},
    ],
    "temperature": 0.2,
    "max_tokens": 16,
    "stop": ["\n\n"],
}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def startup_seconds(cache_dir: str, *extra: str) -> float:
    port = free_port()
    env = {**os.environ, "LOCALAI_CACHE_DIR": cache_dir}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "localai_runtime.cli", "serve", "--port", str(port),
                                "--log-level", "warning", "--data-dir", cache_dir, *extra], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - start
            except httpx.TransportError:
                time.sleep(0.005)
            if process.poll() is not None:
                raise RuntimeError("server exited during start-up")
    finally:
        process.terminate()
        process.wait(timeout=30)


async def per_request_ms(app, path: str, body: bytes, n: int) -> tuple[float, int]:
    status = 0

    async def call() -> None:
        nonlocal status
        sent = False

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)

        async def send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {"runtime": app_runtime},
        }
        await app(scope, receive, send)

    for _ in range(50):
        await call()
    start = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - start) / n * 1000, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as no_configs:
        cold = startup_seconds(cache)
        warm = statistics.median(startup_seconds(cache) for _ in range(args.runs))
        bare = statistics.median(startup_seconds(cache, "--configs", no_configs) for _ in range(args.runs))
    print(f"start-up to ready /healthz, full OpenAI document, shipped registrations: "
          f"cold cache {cold:.2f} s, warm cache {warm:.2f} s (median of {args.runs})")
    print(f"start-up to ready /healthz, full OpenAI document, no registrations (no backend imports): {bare:.2f} s")

    # A trivial createChatCompletion handler, so only routing + validation is timed.
    module = types.ModuleType("_bench_handlers.chat")

    from starlette.responses import JSONResponse

    async def createChatCompletion(body):  # noqa: N802
        return JSONResponse({"ok": True})

    module.createChatCompletion = createChatCompletion
    sys.modules["_bench_handlers"] = types.ModuleType("_bench_handlers")
    sys.modules["_bench_handlers.chat"] = module

    import logging

    logging.disable(logging.WARNING)
    from localai_runtime import Settings, create_app

    settings = Settings(handler_packages=("_bench_handlers", "localai_runtime.handlers"), configs_dir=None)
    app = create_app(settings)
    app.runtime.schemas.validators.warm()
    global app_runtime
    app_runtime = app.runtime
    chat_ms, chat_status = asyncio.run(per_request_ms(app, "/v1/chat/completions", CHAT_BODY, args.requests))
    stub_ms, stub_status = asyncio.run(per_request_ms(app, "/v1/images/generations", b'{"prompt": "x"}', args.requests))
    print("routing + 3.1 validation + handler, POST /v1/chat/completions: "
          f"{chat_ms:.3f} ms/request (status {chat_status})")
    print("routing to a 501 operation, POST /v1/images/generations:       "
          f"{stub_ms:.3f} ms/request (status {stub_status})")


app_runtime = None

if __name__ == "__main__":
    main()
