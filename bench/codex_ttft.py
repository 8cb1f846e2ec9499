"""Time to first token for Codex CLI's requests on Gemma 3 270M: cold, and on the second turn.

Codex's first request of a session carries about 40 KB of instructions and tools (recorded from
Codex CLI 0.171.0 in ``tests/fixtures/codex/first_request.json``); its second request is the same
input plus the model's call and the call's output (``second_request.json``). A fresh server
(Gemma on the example's settings, 32768 tokens in one slot, hosted tools dropped) is sent the
first request cold, then the second: prefix reuse must make the second at least 5x faster to its
first token. Each round starts a new server, so every first request is cold. TTFT is the time
from sending the request to the stream's first output event (``response.output_item.added``,
sent with the first generated text or once a call begins, or a delta). Figures only.
Usage: python bench/codex_ttft.py [--rounds 2] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from bench.server import running_server  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "codex"


def registration() -> dict:
    [example] = [entry for entry in yaml.safe_load((REPO / "configs/examples/gemma3-270m.yaml").read_text())
                 if "createResponse" in entry["registration"]["operations"]]
    return {"registration": {"model": "gemma3-270m", "operations": ["createResponse"]},
            "local_settings": {**example["local_settings"], "context_size": 32768, "parallel": 1},
            "policy": {"hosted_tools": "drop"}, "request_defaults": {"temperature": 0, "max_output_tokens": 16}}


def timed(http: httpx.Client, body: dict) -> tuple[float, dict]:
    """Seconds to the first output event, and the final response's usage."""
    started, first, usage, kinds = time.perf_counter(), None, {}, []
    with http.stream("POST", "/v1/responses", json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"refused: {response.status_code} {response.read().decode()[:500]}")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            kinds.append(event["type"])
            if first is None and (event["type"] == "response.output_item.added" or event["type"].endswith(".delta")):
                first = time.perf_counter() - started
            if event["type"] in ("response.completed", "response.incomplete", "response.failed"):
                usage = event["response"].get("usage") or {}
    if first is None:
        raise SystemExit(f"the stream held no output event: {kinds}")
    return first, usage


def describe(name: str, seconds: float, usage: dict) -> str:
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens", 0)
    return f"{name}: TTFT {seconds:7.2f} s   input {usage.get('input_tokens', 0)} tokens, {cached} from the cache"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the report as the '## Codex CLI: time to first token' section of this file")
    args = parser.parse_args()
    first_body = json.loads((FIXTURES / "first_request.json").read_text())
    second_body = json.loads((FIXTURES / "second_request.json").read_text())
    kinds = ", ".join(sorted({tool["type"] for tool in first_body["tools"]}))
    lines: list[str] = [f"Codex CLI's first request: {len(json.dumps(first_body)) // 1024} KB, "
                        f"{len(first_body['tools'])} tools ({kinds})"]
    print(lines[0])
    ratios = []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as work:
            configs = Path(work, "configs")
            configs.mkdir()
            (configs / "codex.yaml").write_text(yaml.safe_dump(registration()))
            with running_server(configs, "--data-dir", str(Path(work, "data"))) as server, \
                    httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=1800) as http:
                cold, cold_usage = timed(http, first_body)
                warm, warm_usage = timed(http, second_body)
        ratios.append(cold / warm)
        for line in (f"round {round_ + 1}", describe("  first request, cold", cold, cold_usage),
                     describe("  second turn (call output added)", warm, warm_usage),
                     f"  ratio {cold / warm:.1f}x (aim >= 5x)"):
            print(line)
            lines.append(line)
    summary = (f"Gemma 3 270M Q4_K_M, 2 threads, one slot of 32768 tokens: median ratio "
               f"{statistics.median(ratios):.1f}x over {args.rounds} rounds (aim >= 5x)")
    print(summary)
    lines.append(summary)
    if args.output is not None:
        write_section(args.output, "## Codex CLI: time to first token", "python bench/codex_ttft.py", lines)


if __name__ == "__main__":
    main()
