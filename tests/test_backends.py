"""The llama-cpp and gpt4all adapters, called directly (no HTTP) on the tiny demo model."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

from localai_runtime.backends.abstract import (
    Backend,
    LocalSettings,
    ModelInstance,
    Piece,
)
from localai_runtime.backends.gpt4all import GPT4AllBackend
from localai_runtime.backends.llama_cpp import HONOURED_EXTENSIONS, LlamaCppBackend
from localai_runtime.demo_model import write_demo_model
from localai_runtime.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    NotImplementedAPIError,
    UnsupportedParameterError,
)
from localai_runtime.tools.request import NO_TOOLS
from localai_runtime.tools.response_format import TEXT, chat_response_format

BACKENDS = {"llama-cpp": LlamaCppBackend, "gpt4all": GPT4AllBackend}
CONTEXT = 512
CHAT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
# The demo model's ChatML rendering of CHAT, without the BOS that both backends add themselves.
CHAT_PROMPT = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
EOS = "2"  # token id of </s> in the demo vocabulary


def never() -> bool:
    return False


def settings(backend: str, path: Path | None, **values) -> LocalSettings:
    return LocalSettings(backend, path, {"context_size": CONTEXT, "threads": 2, **values})


def choices(pieces: Iterable[Piece]) -> dict[int, tuple[str, Piece]]:
    """index -> (the choice's text, its last piece); only last pieces carry a finish_reason."""
    collected: dict[int, list[Piece]] = {}
    for piece in pieces:
        collected.setdefault(piece.index, []).append(piece)
    for parts in collected.values():
        assert all(p.finish_reason is None for p in parts[:-1])
    return {i: ("".join(p.text for p in parts), parts[-1]) for i, parts in collected.items()}


def one(pieces: Iterable[Piece]) -> tuple[str, Piece]:
    result = choices(pieces)
    assert list(result) == [0]
    return result[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("backends") / "demo.gguf")


@pytest.fixture(scope="module")
def instances(model_path: Path) -> Iterator[dict[str, ModelInstance]]:
    loaded = {name: cls().load(settings(name, model_path)) for name, cls in BACKENDS.items()}
    yield loaded
    for instance in loaded.values():
        instance.close()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def instance(instances: dict[str, ModelInstance], backend: str) -> ModelInstance:
    return instances[backend]


@pytest.fixture
def llama(instances: dict[str, ModelInstance]) -> ModelInstance:
    return instances["llama-cpp"]


# -- both backends --------------------------------------------------------------------------------


def test_adapters_implement_the_protocols(instance: ModelInstance, backend: str) -> None:
    adapter = BACKENDS[backend]()
    assert isinstance(adapter, Backend) and isinstance(instance, ModelInstance)
    assert adapter.name == backend and adapter.settings_schema["type"] == "object"
    assert {"createChatCompletion", "createCompletion", "createEmbedding"} <= set(adapter.honoured)
    assert "x-localai-extensions.top_k" in adapter.honoured["createChatCompletion"]
    assert ("seed" in adapter.honoured["createCompletion"]) == (backend == "llama-cpp")  # gpt4all has no seed


def test_chat_streams_pieces_with_usage(instance: ModelInstance) -> None:
    pieces = list(instance.chat({"messages": CHAT, "max_tokens": 8, "temperature": 0}, never, NO_TOOLS, TEXT))
    text, last = one(pieces)
    assert text and len(pieces) > 2
    assert last.finish_reason == "length" and last.completion_tokens == 8
    assert last.prompt_tokens == len(instance.tokenize(CHAT_PROMPT))


def test_greedy_is_deterministic(instance: ModelInstance) -> None:
    request = {"prompt": "Hello world", "max_tokens": 24, "temperature": 0}
    first, last = one(instance.complete(request, never))
    assert one(instance.complete(request, never))[0] == first
    assert last.completion_tokens == 24 and len(set(first)) > 5


def test_output_matches_the_library_own(instance: ModelInstance, backend: str, model_path: Path) -> None:
    """Pieces streamed by the adapter concatenate to the library's own non-streamed text."""
    ours, _ = one(instance.complete({"prompt": "Hello world", "max_tokens": 24, "temperature": 0}, never))
    if backend == "llama-cpp":
        import llama_cpp

        library = llama_cpp.Llama(str(model_path), n_ctx=CONTEXT, n_threads=2, verbose=False)
        theirs = library.create_completion("Hello world", max_tokens=24, temperature=0)["choices"][0]["text"]
    else:
        import gpt4all

        library = gpt4all.GPT4All(model_path.name, model_path=model_path.parent, allow_download=False,
                                  device="cpu", n_threads=2, n_ctx=CONTEXT)
        theirs = library.generate("Hello world", max_tokens=24, temp=0, repeat_penalty=1.0)
    library.close()
    assert ours == theirs


def test_should_stop_ends_generation_early(instance: ModelInstance) -> None:
    # Told to stop once two pieces arrived (not after a number of polls: gpt4all also polls while
    # it waits for its first token, however long a busy machine makes that wait).
    pieces = []
    for piece in instance.complete({"prompt": "Hello", "max_tokens": 200, "temperature": 0}, lambda: len(pieces) >= 2):
        pieces.append(piece)
    assert 2 <= len(pieces) <= 4  # stopped within a token or two of being told
    assert all(p.finish_reason is None for p in pieces)  # cut off: no final piece


def test_stop_sequence(instance: ModelInstance) -> None:
    request = {"prompt": "Hello world", "max_tokens": 24, "temperature": 0}
    full, _ = one(instance.complete(request, never))
    stop = full[12:15]
    text, last = one(instance.complete({**request, "stop": [stop, "never-there"]}, never))
    assert text == full[: full.index(stop)]
    assert last.finish_reason == "stop" and 0 < last.completion_tokens < 24


def test_n_choices(instance: ModelInstance) -> None:
    request = {"messages": CHAT, "max_tokens": 6, "temperature": 1.0, "n": 2}
    result = choices(instance.chat(request, never, NO_TOOLS, TEXT))
    assert sorted(result) == [0, 1]
    for _, last in result.values():
        assert last.finish_reason == "length" and last.completion_tokens == 6


def test_context_overflow(instance: ModelInstance) -> None:
    with pytest.raises(ContextLengthExceededError) as caught:
        list(instance.complete({"prompt": "hello " * 600, "max_tokens": 4}, never))
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "prompt"
    assert str(CONTEXT) in caught.value.message


def test_missing_file(backend: str, tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    adapter = BACKENDS[backend]()
    assert adapter.check(settings(backend, missing), frozenset({"createChatCompletion"})) == [
        f"model file not found: {missing}"
    ]
    with pytest.raises(RuntimeError, match="absent.gguf"):
        adapter.load(settings(backend, missing))


def test_corrupt_file_fails_cleanly(instance: ModelInstance, backend: str, model_path: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    data = model_path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="truncated.gguf"):
        BACKENDS[backend]().load(settings(backend, truncated))
    assert one(instance.complete({"prompt": "hi", "max_tokens": 2}, never))[1].completion_tokens == 2


def test_tokenize_agrees_across_backends(instances: dict[str, ModelInstance]) -> None:
    tokens = instances["llama-cpp"].tokenize("hello world")
    assert tokens[0] == 1 and len(tokens) > 1  # BOS, then the text
    assert instances["gpt4all"].tokenize("hello world") == tokens


# -- llama-cpp ----------------------------------------------------------------------------------


def test_llama_cpp_seeds(llama: ModelInstance) -> None:
    def sample(seed: int, n: int = 1) -> list[str]:
        request = {"prompt": "Hello", "max_tokens": 12, "temperature": 1.0, "seed": seed, "n": n}
        return [text for _, (text, _) in sorted(choices(llama.complete(request, never)).items())]

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    assert sample(7, n=2) == sample(7) + sample(8)  # choice i uses seed + i


def test_llama_cpp_json_schema_response_format(llama: ModelInstance) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    request = {"messages": CHAT, "max_tokens": 200, "temperature": 0,
               "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}}
    text, last = one(llama.chat(request, never, NO_TOOLS, chat_response_format(request)))
    assert last.finish_reason == "stop"
    assert isinstance(json.loads(text)["a"], int)
    any_object = {**request, "response_format": {"type": "json_object"}}
    text, _ = one(llama.chat(any_object, never, NO_TOOLS, chat_response_format(any_object)))
    assert isinstance(json.loads(text), dict)


def test_llama_cpp_grammar_extension(llama: ModelInstance) -> None:
    assert "grammar" in HONOURED_EXTENSIONS
    for seed in range(3):
        request = {"messages": CHAT, "temperature": 1.0, "seed": seed,
                   "x-localai-extensions": {"grammar": 'root ::= "yes" | "no"'}}
        text, last = one(llama.chat(request, never, NO_TOOLS, TEXT))
        assert text in {"yes", "no"} and last.finish_reason == "stop"
    with pytest.raises(InvalidRequestError) as caught:
        llama.chat({"messages": CHAT, "x-localai-extensions": {"grammar": 'root ::= "unterminated'}}, never, NO_TOOLS,
                   TEXT)
    assert caught.value.param == "x-localai-extensions.grammar"


def test_llama_cpp_logit_bias_and_ignore_eos(llama: ModelInstance) -> None:
    request = {"prompt": "Hello", "max_tokens": 5, "temperature": 0, "logit_bias": {EOS: 100}}
    text, last = one(llama.complete(request, never))
    assert (text, last.finish_reason, last.completion_tokens) == ("", "stop", 0)
    text, last = one(llama.complete({**request, "x-localai-extensions": {"ignore_eos": True}}, never))
    assert last.finish_reason == "length" and last.completion_tokens == 5
    with pytest.raises(InvalidRequestError):
        llama.complete({**request, "logit_bias": {"99999": 1}}, never)


def test_llama_cpp_logprobs(llama: ModelInstance) -> None:
    request = {"messages": CHAT, "max_tokens": 5, "temperature": 0, "logprobs": True, "top_logprobs": 3}
    pieces = list(llama.chat(request, never, NO_TOOLS, TEXT))
    entries = [entry for piece in pieces for entry in piece.logprobs or ()]
    assert len(entries) == 5 == pieces[-1].completion_tokens
    for entry in entries:
        assert len(entry["top_logprobs"]) == 3 and entry["logprob"] <= 0
        assert entry["top_logprobs"][0]["token"] == entry["token"]  # greedy picks the most likely
        assert bytes(entry["bytes"]).decode() == entry["token"]
    assert "".join(e["token"] for e in entries) == "".join(p.text for p in pieces)


def test_llama_cpp_multibyte_characters_are_never_split(llama: ModelInstance) -> None:
    # The grammar forces characters made of byte tokens; 4-byte lead bytes are banned because
    # llama.cpp's grammar accepts overlong (invalid) encodings of 3-byte characters.
    bias = {str(3 + byte): -100 for byte in range(0xF0, 0xF8)}
    grammar = {"grammar": 'root ::= ("日" | "本" | "é" | "x")+', "ignore_eos": True}
    seen = set()
    for seed in range(4):
        request = {"prompt": "hi", "max_tokens": 31, "temperature": 1.0, "seed": seed, "logit_bias": bias,
                   "x-localai-extensions": grammar}
        pieces = list(llama.complete(request, never))
        assert all("\ufffd" not in p.text for p in pieces)
        text = "".join(p.text for p in pieces)
        assert set(text) <= set("日本éx") and pieces[-1].completion_tokens == 31
        seen |= set(text)
    assert {"日", "本"} & seen
    # A character cut by max_tokens is dropped, and the limit holds (5 tokens: 日 and 2 bytes of 本).
    request = {"prompt": "hi", "max_tokens": 5, "temperature": 0, "x-localai-extensions": {"grammar": 'root ::= "日本"+'}}
    text, last = one(llama.complete(request, never))
    assert (text, last.finish_reason, last.completion_tokens) == ("日", "length", 5)


def test_llama_cpp_embeddings(llama: ModelInstance) -> None:
    vectors, used = llama.embed(["hello world", "hello world", "other text"])
    assert [len(v) for v in vectors] == [64, 64, 64]
    assert vectors[0] == vectors[1] != vectors[2]
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0)
    assert used == 2 * len(llama.tokenize("hello world")) + len(llama.tokenize("other text"))
    with pytest.raises(ContextLengthExceededError):
        llama.embed(["hello " * 600])


# -- gpt4all ------------------------------------------------------------------------------------


def test_gpt4all_cannot_embed_with_a_generative_model(instances: dict[str, ModelInstance], model_path: Path) -> None:
    adapter = GPT4AllBackend()
    problems = adapter.check(settings("gpt4all", model_path), frozenset({"createEmbedding", "createChatCompletion"}))
    assert problems == ["gpt4all cannot embed with this model (only bert/nomic-bert embedding models)"]
    assert adapter.check(settings("gpt4all", model_path), frozenset({"createChatCompletion"})) == []
    with pytest.raises(NotImplementedAPIError):
        instances["gpt4all"].embed(["hello"])


def test_gpt4all_refuses_token_prompts(instances: dict[str, ModelInstance]) -> None:
    with pytest.raises(UnsupportedParameterError):
        instances["gpt4all"].complete({"prompt": [1, 400, 401]}, never)


def test_gpt4all_tokenize_refuses_text_longer_than_the_context(instances: dict[str, ModelInstance]) -> None:
    with pytest.raises(ContextLengthExceededError):
        instances["gpt4all"].tokenize("hello " * 600)
