"""What a response costs against the equivalent chat completion, and what the store adds.

A server runs the Gemma 3 270M registration (``configs/examples/gemma3-270m.yaml``: chat and
Responses on the same settings). In alternating rounds it streams a chat completion and a
response of N tokens each (``ignore_eos``, temperature 0) and prints tokens/s of both and their
ratio (aim >= 0.97). Then it times the store: p50/p95 of the writes and reads one response makes
(in-process, on a SQLite file), and the end-to-end latency of a short stored response against
the same response with ``store: false`` (aim: <= 2 ms p50 added). Figures only.
Usage: python bench/responses.py [--rounds 5] [--tokens 128] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
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
from localai_runtime.store import ResponseRecord, Store  # noqa: E402

GEMMA = "gemma3-270m"
ASK = "Tell me a long story about a lighthouse keeper."


def say(lines: list[str], line: str) -> None:
    print(line)
    lines.append(line)


def chat_rate(client: openai.OpenAI, tokens: int) -> float:
    started, count = time.perf_counter(), 0
    stream = client.chat.completions.create(model=GEMMA, messages=[{"role": "user", "content": ASK}],
                                            max_tokens=tokens, temperature=0, stream=True,
                                            extra_body={"x-localai-extensions": {"ignore_eos": True}})
    for chunk in stream:
        count += bool(chunk.choices and chunk.choices[0].delta.content)
    return count / (time.perf_counter() - started)


def responses_rate(client: openai.OpenAI, tokens: int) -> float:
    started, count = time.perf_counter(), 0
    stream = client.responses.create(model=GEMMA, input=ASK, max_output_tokens=tokens, temperature=0, stream=True,
                                     extra_body={"x-localai-extensions": {"ignore_eos": True}})
    for event in stream:
        count += event.type == "response.output_text.delta"
    return count / (time.perf_counter() - started)


async def store_timings(rounds: int) -> tuple[list[float], list[float]]:
    """Milliseconds of one response's writes (put) and of a chain read of three, per round."""
    directory = tempfile.mkdtemp()
    store = await Store.open(Store.sqlite_url(Path(directory)))
    writes, reads = [], []
    previous = None
    try:
        for i in range(rounds):
            body = {"id": f"resp_{i}", "object": "response", "status": "completed", "model": GEMMA,
                    "output": [{"type": "message", "id": f"msg_{i}", "role": "assistant", "status": "completed",
                                "content": [{"type": "output_text", "text": "x" * 600, "annotations": []}]}]}
            record = ResponseRecord(f"resp_{i}", time.time(), GEMMA, "completed", body,
                                    [{"type": "message", "id": f"in_{i}", "role": "user",
                                      "content": [{"type": "input_text", "text": ASK}]}], previous)
            started = time.perf_counter()
            await store.put_response(record)
            writes.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await store.chain(record.id)
            reads.append((time.perf_counter() - started) * 1000)
            previous = record.id if i % 3 != 2 else None  # chains of three
    finally:
        await store.close()
        shutil.rmtree(directory, ignore_errors=True)
    return writes, reads


def latency_ms(client: openai.OpenAI, store: bool) -> float:
    started = time.perf_counter()
    client.responses.create(model=GEMMA, input="Hi", max_output_tokens=16, temperature=0, store=store)
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the report as the '## Responses' section of this file")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        configs = Path(work, "configs")
        configs.mkdir()
        shutil.copy(REPO / "configs/examples/gemma3-270m.yaml", configs)
        with running_server(configs, "--data-dir", str(Path(work, "data"))) as server:
            port = server.port
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0,
                                   timeout=300)
            chat_rate(client, 16)  # load both registrations' models
            responses_rate(client, 16)
            chats, responses = [], []
            for round_ in range(args.rounds):
                chats.append(chat_rate(client, args.tokens))
                responses.append(responses_rate(client, args.tokens))
                say(lines, f"round {round_ + 1}: chat {chats[-1]:6.1f} tok/s   responses {responses[-1]:6.1f} tok/s   "
                           f"ratio {responses[-1] / chats[-1]:.3f}")
            ratios = [r / c for r, c in zip(responses, chats, strict=True)]
            say(lines, f"Gemma 3 270M Q4_K_M, {args.tokens} streamed tokens, 2 threads: median chat "
                       f"{statistics.median(chats):.1f} tok/s, responses {statistics.median(responses):.1f} tok/s, "
                       f"median ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.2f}-{max(ratios):.2f}; "
                       "aim >= 0.97)")
            stored, unstored = [], []
            for _ in range(10 * args.rounds):
                stored.append(latency_ms(client, True))
                unstored.append(latency_ms(client, False))
            say(lines, f"short response (16 tokens) end to end: stored p50 {statistics.median(stored):.1f} ms, "
                       f"store false p50 {statistics.median(unstored):.1f} ms (difference "
                       f"{statistics.median(stored) - statistics.median(unstored):+.1f} ms, inside generation noise)")
    writes, reads = asyncio.run(store_timings(200))
    say(lines, f"store (SQLite, WAL, in-process, 200 responses): write p50 {percentile(writes, 0.5):.2f} ms "
               f"p95 {percentile(writes, 0.95):.2f} ms; chain read p50 {percentile(reads, 0.5):.2f} ms "
               f"p95 {percentile(reads, 0.95):.2f} ms (aim: <= 2 ms p50 added per request)")
    if args.output is not None:
        write_section(args.output, "## Responses", "python bench/responses.py", lines)


if __name__ == "__main__":
    main()
