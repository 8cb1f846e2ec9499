"""localai-runtime against llama-cpp-python's own server, on the same generated GGUF files.

Both servers run side by side as subprocesses on 127.0.0.1 (only one is loaded at a time);
one client process drives both in alternating rounds, so machine noise hits both alike. Prints
a table and writes BENCHMARKS.md (date, machine, versions). Figures only: nothing asserts.

Measured:
1. server overhead: chat completions with max_tokens 1 on the tiny model, concurrency 1 and 8:
   requests/s, p50 and p99 latency;
2. streaming throughput: tokens/s of a long streamed chat on the benchmark model (512-dim,
   8 layers), against each other and against llama_cpp.Llama called in-process;
3. time to first token of a streamed chat;
4. concurrency: 8 clients with long generations, ours with ``parallel: 2`` (two instances of
   one thread each, as many compute threads as cores) against the peer (one instance of two
   threads, requests serialized): total tokens/s, and /healthz latency (p50, p99) during the load;
5. start-up: process start to ready;
6. memory: peak RSS of each server.

The overhead runs twice: with an httpx async client (in Python, like most callers) and, where
Debian's ``wrk`` is installed, with wrk, whose C client does not become the bottleneck first.

Usage: python bench/peer.py [--quick] [--output BENCHMARKS.md]
Needs llama-cpp-python's server extra: pip install 'llama-cpp-python[server]' (and apt-get install wrk).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

THREADS = 2
CONTEXT = 2048
MESSAGES = [{"role": "user", "content": "Tell me a long story about a cat who learns to sail."}]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    url: str
    model: str
    started_s: float
    models: dict[str, str] = field(default_factory=dict)

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def wait_ready(process: subprocess.Popen, url: str, timeout: float = 180) -> float:
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - start
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"{url}: not ready after {timeout} s")


@contextlib.contextmanager
def ours(tiny: Path, bench: Path) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as configs:
        Path(configs, "bench.yaml").write_text(
            "registration: {model: tiny, operations: [createChatCompletion, createCompletion]}\n"
            f"local_settings: {{backend: llama-cpp, model_file: '{tiny}', threads: {THREADS}, "
            f"context_size: {CONTEXT}, preload: true}}\n"
            "---\n"
            "registration: {model: bench, operations: [createChatCompletion, createCompletion]}\n"
            f"local_settings: {{backend: llama-cpp, model_file: '{bench}', threads: {THREADS}, "
            f"context_size: {CONTEXT}, preload: true}}\n"
            "---\n"
            "# Two instances of one thread each: as many compute threads as cores.\n"
            "registration: {model: bench-parallel, operations: [createChatCompletion]}\n"
            f"local_settings: {{backend: llama-cpp, model_file: '{bench}', threads: {max(1, THREADS // 2)}, "
            f"context_size: {CONTEXT}, preload: true, parallel: 2}}\n"
        )
        port = free_port()
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "localai_runtime.cli", "serve", "--port", str(port), "--configs", configs,
             "--log-level", "warning"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(process, url + "/readyz")
            yield Server("localai-runtime", process, url, "tiny", time.perf_counter() - start)
        finally:
            process.terminate()
            process.wait(timeout=60)


@contextlib.contextmanager
def peer(model: Path, alias: str) -> Iterator[Server]:
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", alias,
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(CONTEXT), "--n_threads", str(THREADS),
         "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(process, url + "/v1/models")
        yield Server("llama_cpp.server", process, url, alias, time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def overhead(url: str, model: str, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
    deadline = time.perf_counter() + seconds
    errors = 0
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                if response.status_code != 200:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": errors}


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"model": "%s", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}'
wrk.headers["Content-Type"] = "application/json"
"""


def _milliseconds(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def overhead_wrk(url: str, model: str, concurrency: int, seconds: float) -> dict[str, float]:
    """The same measurement with wrk (C, keep-alive), so the client is not the bottleneck."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % model)
    try:
        output = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "--latency", "-s", script.name,
             url + "/v1/chat/completions"], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script.name)
    figures = {"errors": 0.0}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            figures["p50_ms"] = _milliseconds(parts[1])
        elif parts[:1] == ["99%"]:
            figures["p99_ms"] = _milliseconds(parts[1])
        elif line.strip().startswith("Non-2xx"):
            figures["errors"] = float(parts[-1])
    return figures


def stream_chat(url: str, model: str, max_tokens: int) -> tuple[int, float, float]:
    """(content chunks, seconds to the first content chunk, total seconds) of one streamed chat."""
    body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    start = time.perf_counter()
    first = None
    count = 0
    with httpx.Client(base_url=url, timeout=300) as client, \
            client.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            delta = json.loads(line[6:])["choices"]
            if delta and delta[0].get("delta", {}).get("content"):
                count += 1
                if first is None:
                    first = time.perf_counter() - start
    return count, first or float("nan"), time.perf_counter() - start


def direct_rate(llm, max_tokens: int) -> float:
    start = time.perf_counter()
    count = 0
    for chunk in llm.create_chat_completion(MESSAGES, max_tokens=max_tokens, temperature=0, stream=True):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            count += 1
    return count / (time.perf_counter() - start)


async def concurrency(url: str, health_path: str, model: str, clients: int, max_tokens: int) -> dict[str, float]:
    body = {"model": model, "messages": MESSAGES, "max_tokens": max_tokens, "temperature": 0.7}
    health: list[float] = []
    done = asyncio.Event()
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=clients + 2)) as client:

        async def poll_health() -> None:
            while not done.is_set():
                start = time.perf_counter()
                await client.get(health_path)
                health.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

        async def generate() -> int:
            response = await client.post("/v1/chat/completions", json=body)
            return response.json()["usage"]["completion_tokens"] if response.status_code == 200 else 0

        poller = asyncio.create_task(poll_health())
        start = time.perf_counter()
        tokens = await asyncio.gather(*(generate() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        done.set()
        await poller
    return {"tokens_per_s": sum(tokens) / elapsed, "health_p50_ms": percentile(health, 0.5) * 1000,
            "health_p99_ms": percentile(health, 0.99) * 1000, "completed": sum(1 for t in tokens if t)}


def versions() -> dict[str, str]:
    names = ["localai-runtime", "llama_cpp_python", "gpt4all", "connexion", "uvicorn", "fastapi", "openai"]
    out = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    out["python"] = platform.python_version()
    return out


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB, {platform.system()} {platform.release()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter rounds (for a smoke run)")
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 5.0
    rounds = 1 if args.quick else 2
    long_tokens = 64 if args.quick else 256

    from localai_runtime import demo_model

    tiny = demo_model.ensure_demo_model()
    bench = demo_model.ensure_demo_model(spec=demo_model.BENCH_SPEC)
    results: dict[str, dict[str, list[float]]] = {}

    def record(metric: str, who: str, value: float) -> None:
        results.setdefault(metric, {}).setdefault(who, []).append(value)

    with ours(tiny, bench) as mine, peer(tiny, "tiny") as theirs_tiny:
        for _ in range(rounds):
            for server in (mine, theirs_tiny):
                for level in (1, 8):
                    figures = asyncio.run(overhead(server.url, "tiny", level, seconds))
                    for key, value in figures.items():
                        record(f"overhead c={level} (httpx client) {key}", server.name, value)
                    if shutil.which("wrk"):
                        for key, value in overhead_wrk(server.url, "tiny", level, seconds).items():
                            record(f"overhead c={level} (wrk client) {key}", server.name, value)
        record("start-up s (tiny model)", mine.name, mine.started_s)
        record("start-up s (tiny model)", theirs_tiny.name, theirs_tiny.started_s)
        record("peak RSS MiB (after overhead runs)", theirs_tiny.name, theirs_tiny.peak_rss_mib())

    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(bench), n_ctx=CONTEXT, n_threads=THREADS, verbose=False)
    with ours(tiny, bench) as mine, peer(bench, "bench") as theirs:
        for server in (mine, theirs):
            stream_chat(server.url, "bench", 8)  # warm
        direct_rate(llm, 8)
        for _ in range(rounds + 1):
            record("stream tokens/s", "llama_cpp.Llama in-process", direct_rate(llm, long_tokens))
            for server in (mine, theirs):
                count, _first, total = stream_chat(server.url, "bench", long_tokens)
                record("stream tokens/s", server.name, count / total)
        # Time to first token on its own: short streams, alternating which server goes first, each
        # after a pause (llama.cpp's threads spin a while after computing, and would slow whichever
        # request came right after another generation).
        for round_ in range(4 * rounds):
            for server in (mine, theirs) if round_ % 2 == 0 else (theirs, mine):
                time.sleep(0.3)
                record("time to first token ms", server.name, stream_chat(server.url, "bench", 8)[1] * 1000)
        for server in (mine, theirs):
            # The peer has no health endpoint: its cheapest route, GET /v1/models, stands in.
            health = "/healthz" if server is mine else "/v1/models"
            model = "bench-parallel" if server is mine else "bench"
            figures = asyncio.run(concurrency(server.url, health, model, 8, long_tokens // 2))
            for key, value in figures.items():
                record(f"8 clients {key}", server.name, value)
        record("peak RSS MiB (all runs, both models)", mine.name, mine.peak_rss_mib())
        record("peak RSS MiB (bench model runs)", theirs.name, theirs.peak_rss_mib())
    del llm

    report(results, args.output, quick=args.quick)


def report(results: dict[str, dict[str, list[float]]], output: Path, *, quick: bool) -> None:
    ours_name, peer_name = "localai-runtime", "llama_cpp.server"
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `python bench/peer.py{' --quick' if quick else ''}` on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"- Machine: {machine()}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        f"- Models: generated GGUF, tiny (64-dim, 2 layers) and benchmark (512-dim, 8 layers); "
        f"{THREADS} threads, context {CONTEXT}. Medians of the rounds; ratio = ours / peer "
        "(for latencies and memory, lower is better).",
        "",
        f"| metric | {ours_name} | {peer_name} | llama_cpp in-process | ratio |",
        "|---|---|---|---|---|",
    ]
    for metric, by in results.items():
        mine = statistics.median(by[ours_name]) if ours_name in by else None
        theirs = statistics.median(by[peer_name]) if peer_name in by else None
        direct = statistics.median(by["llama_cpp.Llama in-process"]) if "llama_cpp.Llama in-process" in by else None
        ratio = f"{mine / theirs:.2f}" if mine is not None and theirs else ""
        if direct and mine is not None:
            ratio += f" (ours / in-process {mine / direct:.2f})"

        def show(value: float | None) -> str:
            return "" if value is None else f"{value:.1f}"

        lines.append(f"| {metric} | {show(mine)} | {show(theirs)} | {show(direct)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    kept = ""  # bench/soak.py's section survives a new run of this script
    if output.exists() and "\n## Soak" in output.read_text():
        kept = "\n## Soak" + output.read_text().split("\n## Soak", 1)[1]
    output.write_text(text + kept)


if __name__ == "__main__":
    main()
