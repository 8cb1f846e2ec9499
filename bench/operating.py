"""What operating features cost: metrics on the request path, and memory under model swapping.

1. Metrics: two servers on the shipped tiny demo registrations, one with metrics and one with
   ``--no-metrics``; in alternating rounds, short chat completions (8 tokens) one after another
   and a streamed completion of 256 tokens, on each. Prints requests/s and streamed tokens/s
   with metrics over without (aim: >= 0.97, i.e. metrics cost <= 3%).
2. Lifecycle: a server with two registrations of the demo model and ``--max-loaded-models 1``;
   100 requests alternating between them (each one unloads the other model); prints the
   server's RSS after the first pair, after 50 and after 100 (bounded: no growth per swap).
Figures only. Usage: python bench/operating.py [--rounds 5] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from bench.server import running_server  # noqa: E402

ASK = [{"role": "user", "content": "Hello"}]


def say(lines: list[str], line: str) -> None:
    print(line)
    lines.append(line)


def client_for(port: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120)


def requests_per_s(client: openai.OpenAI, count: int = 40) -> float:
    started = time.perf_counter()
    for _ in range(count):
        client.chat.completions.create(model="demo", messages=ASK, max_tokens=8, temperature=0)
    return count / (time.perf_counter() - started)


def tokens_per_s(client: openai.OpenAI, tokens: int = 256) -> float:
    started, count = time.perf_counter(), 0
    for chunk in client.completions.create(model="demo", prompt="Once", max_tokens=tokens, temperature=0,
                                           stream=True):
        count += bool(chunk.choices and chunk.choices[0].text)
    return count / (time.perf_counter() - started)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def metrics_cost(lines: list[str], rounds: int) -> None:
    configs = REPO / "configs"
    with tempfile.TemporaryDirectory() as data, running_server(configs, "--no-store") as with_port, \
            running_server(configs, "--no-store", "--no-metrics", "--data-dir", data) as without_port:
        on, off = client_for(with_port.port), client_for(without_port.port)
        requests_per_s(on, 4), requests_per_s(off, 4)  # load the models
        ratios_r, ratios_t = [], []
        for round_ in range(rounds):
            r_on, r_off = requests_per_s(on), requests_per_s(off)
            t_off, t_on = tokens_per_s(off), tokens_per_s(on)
            ratios_r.append(r_on / r_off)
            ratios_t.append(t_on / t_off)
            say(lines, f"round {round_ + 1}: short requests {r_on:6.1f}/s with metrics, {r_off:6.1f}/s without "
                       f"({ratios_r[-1]:.3f}); streamed {t_on:7.1f} tok/s with, {t_off:7.1f} without "
                       f"({ratios_t[-1]:.3f})")
        say(lines, f"metrics on / off, median: short requests {statistics.median(ratios_r):.3f}, streamed tokens "
                   f"{statistics.median(ratios_t):.3f} (aim >= 0.97)")


def metrics_work(lines: list[str], requests: int = 20000) -> None:
    """The metrics work of one 8-token request, timed in-process (the server-side figures above
    are mostly the machine's noise): what it is as a share of a request and of a token."""
    from localai_runtime.observability.metrics import Metrics

    metrics = Metrics(pools=lambda: [], models=lambda: ["demo"])
    started = time.perf_counter()
    for _ in range(requests):
        observer = metrics.request("demo")
        observer.admitted()
        for _ in range(8):
            observer.piece()
        observer.finished("length", 20, 8)
        metrics.http.labels("createChatCompletion", "200").inc()
    per_request = (time.perf_counter() - started) / requests
    say(lines, f"metrics work per 8-token request, in-process: {per_request * 1e6:.0f} us "
               f"(one piece: {per_request / 10 * 1e6:.1f} us or less)")


def swap_memory(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as configs:
        Path(configs, "ab.yaml").write_text("".join(
            f"---\nregistration: {{model: {name}, operations: [createChatCompletion]}}\n"
            "local_settings: {backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 2048}\n"
            for name in "ab"))
        with running_server(configs, "--no-store", "--max-loaded-models", "1") as server:
            client, samples = client_for(server.port), {}
            for i in range(100):
                client.chat.completions.create(model="ab"[i % 2], messages=ASK, max_tokens=4)
                if i + 1 in (2, 50, 100):
                    samples[i + 1] = rss_mb(server.pid)
        say(lines, "100 requests alternating between two registrations, --max-loaded-models 1 (a swap each): "
                   + ", ".join(f"RSS after {n}: {mb:.0f} MB" for n, mb in samples.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the report as the '## Operating' section of this file")
    args = parser.parse_args()
    lines: list[str] = []
    metrics_cost(lines, args.rounds)
    metrics_work(lines)
    swap_memory(lines)
    if args.output is not None:
        write_section(args.output, "## Operating", "python bench/operating.py", lines)


if __name__ == "__main__":
    main()
