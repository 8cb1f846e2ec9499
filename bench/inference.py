"""Streamed token rate through the server against llama_cpp.Llama called in-process.

Both run the same generated GGUF (the 512-dim, 8-layer benchmark model, so generation
dominates), greedy, the same prompt and token count, in alternating rounds inside one run, so
machine noise hits both alike. The server runs as a subprocess (``localai-runtime serve``)
with a registration for the file; the client is the official ``openai`` package, streaming.

Prints each round and the median ratio server / direct. Figures only; nothing here asserts.
Usage: python bench/inference.py [--rounds 5] [--tokens 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.server import running_server  # noqa: E402

PROMPT = "Once upon a time"


def direct_rate(llm, tokens: int) -> float:
    start = time.perf_counter()
    count = 0
    for _ in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True):
        count += 1
    return count / (time.perf_counter() - start)


def server_rate(client: openai.OpenAI, tokens: int) -> float:
    start = time.perf_counter()
    count = 0
    stream = client.completions.create(model="bench", prompt=PROMPT, max_tokens=tokens, temperature=0.0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            count += 1
    return count / (time.perf_counter() - start)


def raw_rate(http: httpx.Client, tokens: int) -> float:
    """The same stream read as raw SSE lines: the server's cost without the SDK's parsing."""
    start = time.perf_counter()
    count = 0
    body = {"model": "bench", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0.0, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import llama_cpp

    from localai_runtime import demo_model

    model = demo_model.ensure_demo_model(spec=demo_model.BENCH_SPEC)
    with tempfile.TemporaryDirectory() as configs:
        Path(configs, "bench.yaml").write_text(
            "registration: {model: bench, operations: [createCompletion, createChatCompletion]}\n"
            f"local_settings: {{backend: llama-cpp, model_file: '{model}', threads: {args.threads}, "
            "context_size: 2048, preload: true}\n"
        )
        with running_server(configs, "--data-dir", str(Path(configs, "data"))) as server:
            port = server.port
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
            llm = llama_cpp.Llama(model_path=str(model), n_ctx=2048, n_threads=args.threads, verbose=False)
            server_rate(client, 16)  # warm both
            direct_rate(llm, 16)
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            direct, served, raw = [], [], []
            for round_ in range(args.rounds):
                direct.append(direct_rate(llm, args.tokens))
                served.append(server_rate(client, args.tokens))
                raw.append(raw_rate(http, args.tokens))
                print(f"round {round_ + 1}: direct {direct[-1]:7.1f} tok/s   server+openai SDK {served[-1]:7.1f} tok/s "
                      f"({served[-1] / direct[-1]:.3f})   "
                      f"server+raw SSE {raw[-1]:7.1f} tok/s ({raw[-1] / direct[-1]:.3f})")
    print(f"model {model.name} ({demo_model.BENCH_SPEC.dim}-dim, {demo_model.BENCH_SPEC.n_layers} layers), "
          f"{args.tokens} streamed tokens, {args.threads} threads")
    print(f"median: direct {statistics.median(direct):.1f} tok/s; "
          f"server with the openai SDK {statistics.median(served):.1f} tok/s "
          f"(ratio {statistics.median(s / d for s, d in zip(served, direct, strict=True)):.3f}); "
          f"server with raw SSE reading {statistics.median(raw):.1f} tok/s "
          f"(ratio {statistics.median(r / d for r, d in zip(raw, direct, strict=True)):.3f})")


if __name__ == "__main__":
    main()
