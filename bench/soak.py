"""Soak: mixed traffic at concurrency 16 against ``localai-runtime serve`` on the shipped
registrations (the generated demo model through llama-cpp-python and gpt4all).

The mix: chat and completions (plain and streamed, some cut off mid-stream), embeddings, model
listing, health checks, and requests that must fail cleanly (unknown model, invalid body).
Reports requests by outcome, errors (5xx other than 503, transport failures, wrong error
shapes; target 0) and RSS growth between the end of a warm-up and the end (target < 5%).
Figures only; nothing asserts. Usage: python bench/soak.py [--seconds 600] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent

MESSAGES = [{"role": "user", "content": "Tell me about the sea."}]
CHAT, COMPLETE = "/v1/chat/completions", "/v1/completions"
SOAK_HEADING = "## Soak"
REQUESTS = [  # (name, weight, method, path, body)
    ("chat", 30, "POST", CHAT, {"model": "demo", "messages": MESSAGES, "max_tokens": 16}),
    ("chat-gpt4all", 10, "POST", CHAT, {"model": "demo-gpt4all", "messages": MESSAGES, "max_tokens": 8}),
    ("stream", 20, "POST", CHAT, {"model": "demo", "messages": MESSAGES, "max_tokens": 32, "stream": True}),
    ("cut-stream", 5, "POST", COMPLETE, {"model": "demo", "prompt": "Once", "max_tokens": 200, "stream": True}),
    ("completion", 10, "POST", COMPLETE, {"model": "demo-gpt4all", "prompt": "Once", "max_tokens": 8}),
    ("embedding", 10, "POST", "/v1/embeddings", {"model": "demo", "input": ["a", "b c"]}),
    ("models", 5, "GET", "/v1/models", None),
    ("health", 5, "GET", "/healthz", None),
    ("unknown-model", 3, "POST", CHAT, {"model": "nope", "messages": MESSAGES}),
    ("invalid", 2, "POST", CHAT, {"model": "demo", "messages": [{"role": "robot"}]}),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def one(client: httpx.AsyncClient, rng: random.Random, outcomes: collections.Counter, errors: list[str]) -> None:
    name, _, method, path, body = rng.choices(REQUESTS, weights=[r[1] for r in REQUESTS])[0]
    try:
        if body is not None and body.get("stream"):
            async with client.stream(method, path, json=body) as response:
                lines = 0
                async for _line in response.aiter_lines():
                    lines += 1
                    if name == "cut-stream" and lines >= rng.randint(1, 20):
                        break
                status = response.status_code
        else:
            response = await client.request(method, path, json=body)
            status = response.status_code
            if status >= 400:
                error = response.json().get("error", {})
                if set(error) != {"message", "type", "param", "code"}:
                    errors.append(f"{name}: {status} without OpenAI's envelope: {response.text[:200]}")
        outcomes[(name, status)] += 1
        if status >= 500 and status != 503:
            errors.append(f"{name}: {status}")
    except httpx.HTTPError as exc:
        errors.append(f"{name}: {type(exc).__name__}: {exc}")


async def drive(url: str, seconds: float, concurrency: int, seed: int) -> tuple[collections.Counter, list[str]]:
    outcomes: collections.Counter = collections.Counter()
    errors: list[str] = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while time.monotonic() < deadline:
                await one(client, rng, outcomes, errors)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return outcomes, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the report as the '## Soak' section of this file (e.g. BENCHMARKS.md)")
    args = parser.parse_args()

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "localai_runtime.cli", "serve", "--port", str(port),
                                "--log-level", "error", "--no-store"], cwd=REPO, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        asyncio.run(drive(url, args.warmup, args.concurrency, seed=0))
        before = rss_mib(process.pid)
        start = time.monotonic()
        outcomes, errors = asyncio.run(drive(url, args.seconds, args.concurrency, seed=1))
        elapsed = time.monotonic() - start
        after = rss_mib(process.pid)
        active = httpx.get(url + "/readyz", timeout=5).json()["active_generations"]
    finally:
        process.terminate()
        process.wait(timeout=60)

    total = sum(outcomes.values())
    growth = 100 * (after - before) / before
    lines = [
        f"soak: {elapsed:.0f} s at concurrency {args.concurrency}: {total} requests ({total / elapsed:.1f}/s)",
        *(f"  {name:14s} {status}: {count}" for (name, status), count in sorted(outcomes.items())),
        f"errors: {len(errors)}" + "".join(f"\n  {e}" for e in errors[:20]),
        f"RSS after warm-up {before:.1f} MiB, at the end {after:.1f} MiB: growth {growth:+.2f}%",
        f"generations still running afterwards: {active}",
    ]
    print("\n".join(lines))
    if args.output is not None:
        write_section(args.output, lines)


def write_section(path: Path, lines: list[str]) -> None:
    """Replace (or add) the '## Soak' section of a Markdown file, keeping everything else."""
    from report import write_section as write

    write(path, SOAK_HEADING, "python bench/soak.py", lines)


if __name__ == "__main__":
    main()
