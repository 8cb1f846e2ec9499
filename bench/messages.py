"""What an Anthropic message costs against the equivalent chat completion.

A server runs the Gemma 3 270M registration (``configs/examples/gemma3-270m.yaml``: chat and
Messages on the same settings, one loaded model). In alternating rounds it streams a chat
completion (the openai SDK) and a message (the anthropic SDK) of the same request (temperature
0, top_k 1: the same greedy text, token for token) and prints tokens/s of both and their ratio
(aim >= 0.97). Then it sends the same long system prompt twice with a different question and
prints the cached tokens of the second request (``cache_read_input_tokens``: the prefix reuse
Claude Code's second turn gets; ``tests/test_claude_code.py`` checks it on Claude Code itself).
Figures only. Usage: python bench/messages.py [--rounds 5] [--tokens 128] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anthropic
import openai

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.report import write_section  # noqa: E402
from bench.server import running_server  # noqa: E402

GEMMA = "gemma3-270m"
ASK = "Tell me a long story about a lighthouse keeper."
GREEDY = {"temperature": 0, "top_k": 1}


def say(lines: list[str], line: str) -> None:
    print(line)
    lines.append(line)


def chat_rate(client: openai.OpenAI, tokens: int) -> tuple[float, int]:
    started, count = time.perf_counter(), 0
    stream = client.chat.completions.create(model=GEMMA, messages=[{"role": "user", "content": ASK}],
                                            max_tokens=tokens, temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_body={"x-localai-extensions": {"top_k": 1}})
    for chunk in stream:
        if chunk.usage is not None:
            count = chunk.usage.completion_tokens
    return count / (time.perf_counter() - started), count


def messages_rate(client: anthropic.Anthropic, tokens: int) -> tuple[float, int]:
    started = time.perf_counter()
    with client.messages.stream(model=GEMMA, max_tokens=tokens, messages=[{"role": "user", "content": ASK}],
                                extra_body=GREEDY) as stream:
        for _ in stream.text_stream:
            pass
        count = stream.get_final_message().usage.output_tokens
    return count / (time.perf_counter() - started), count


def prefix_reuse(client: anthropic.Anthropic) -> tuple[int, int]:
    """(prompt tokens, of which read from the cache) of a second request with the first one's system prompt."""
    system = [{"type": "text", "text": "x-anthropic-billing-header: cc_version=1; cch=first;"},
              {"type": "text", "text": "You are a careful assistant. " * 400}]
    client.messages.create(model=GEMMA, max_tokens=1, system=system, messages=[{"role": "user", "content": "Hi"}])
    system[0]["text"] = "x-anthropic-billing-header: cc_version=1; cch=second;"  # differs per request
    usage = client.messages.create(model=GEMMA, max_tokens=1, system=system,
                                   messages=[{"role": "user", "content": "And now?"}]).usage
    return usage.input_tokens + usage.cache_read_input_tokens, usage.cache_read_input_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--output", type=Path, default=None,
                        help="also write the report as the '## Messages' section of this file")
    args = parser.parse_args()
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        configs = Path(work, "configs")
        configs.mkdir()
        shutil.copy(REPO / "configs/examples/gemma3-270m.yaml", configs)
        with running_server(configs, "--data-dir", str(Path(work, "data"))) as server:
            base = f"http://127.0.0.1:{server.port}"
            chat = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
            messages = anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0, timeout=300)
            chat_rate(chat, 16)  # load the model
            chats, answers = [], []
            for round_ in range(args.rounds):
                (rate, chat_tokens), (answer, message_tokens) = chat_rate(chat, args.tokens), \
                    messages_rate(messages, args.tokens)
                chats.append(rate)
                answers.append(answer)
                say(lines, f"round {round_ + 1}: chat {rate:6.1f} tok/s ({chat_tokens} tokens)   messages "
                           f"{answer:6.1f} tok/s ({message_tokens} tokens)   ratio {answer / rate:.3f}")
            ratios = [m / c for m, c in zip(answers, chats, strict=True)]
            say(lines, f"Gemma 3 270M Q4_K_M, up to {args.tokens} streamed tokens, 2 threads: median chat "
                       f"{statistics.median(chats):.1f} tok/s, messages {statistics.median(answers):.1f} tok/s, "
                       f"median ratio {statistics.median(ratios):.3f} (rounds {min(ratios):.2f}-{max(ratios):.2f}; "
                       "aim >= 0.97)")
            total, cached = prefix_reuse(messages)
            say(lines, f"second request with the same system prompt (its billing block differing): {cached} of "
                       f"{total} prompt tokens read from the cache ({100 * cached / total:.0f}%)")
    if args.output is not None:
        write_section(args.output, "## Messages", "python bench/messages.py", lines)


if __name__ == "__main__":
    main()
