"""The gpt4all adapter reads a request's sampling values once, with one set of defaults, and
hands each to gpt4all's prompt context as given: its greedy output matches gpt4all's own
``generate`` with the same values, on the demo model through the real library.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gpt4all
import pytest

from localai_runtime.backends.abstract import LocalSettings, ModelInstance
from localai_runtime.backends.gpt4all import GPT4AllBackend
from localai_runtime.demo_model import write_demo_model

CONTEXT = 512
PROMPT = "Hello world"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("gpt4all") / "demo.gguf")


@pytest.fixture(scope="module")
def instance(model_path: Path) -> Iterator[ModelInstance]:
    loaded = GPT4AllBackend().load(LocalSettings("gpt4all", model_path, {"context_size": CONTEXT, "threads": 2}))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def library(model_path: Path) -> Iterator[gpt4all.GPT4All]:
    model = gpt4all.GPT4All(model_path.name, model_path=model_path.parent, allow_download=False, device="cpu",
                            n_threads=2, n_ctx=CONTEXT)
    yield model
    model.close()


def text(instance: ModelInstance, request: dict) -> str:
    return "".join(piece.text for piece in instance.complete({"prompt": PROMPT, **request}, lambda: False))


@pytest.mark.parametrize(("extensions", "theirs"), [
    ({}, {"repeat_penalty": 1.0, "repeat_last_n": 64}),  # the adapter's defaults: no penalty
    ({"repeat_penalty": 1.5, "repeat_last_n": 8}, {"repeat_penalty": 1.5, "repeat_last_n": 8}),
    ({"repeat_penalty": 1.5}, {"repeat_penalty": 1.5, "repeat_last_n": 64}),
])
def test_greedy_sampling_values_reach_gpt4all_as_given(instance, library, extensions, theirs):
    ours = text(instance, {"max_tokens": 24, "temperature": 0, "x-localai-extensions": extensions})
    assert ours == library.generate(PROMPT, max_tokens=24, temp=0, **theirs)


def test_a_penalty_changes_the_greedy_text(instance):
    plain = text(instance, {"max_tokens": 24, "temperature": 0})
    assert text(instance, {"max_tokens": 24, "temperature": 0, "x-localai-extensions": {"repeat_penalty": 1.5}}) \
        != plain
