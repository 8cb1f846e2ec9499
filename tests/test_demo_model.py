"""The generated demo GGUF model: deterministic bytes, and it really runs in both backends.

llama-cpp-python and gpt4all are hard dependencies, imported as such: a broken install fails
here instead of skipping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import gguf
import gpt4all
import llama_cpp
import pytest

from localai_runtime.demo_model import (
    BENCH_SPEC,
    DemoModelSpec,
    demo_model_filename,
    ensure_demo_model,
    write_demo_model,
)

MULTIBYTE = "héllo 日本 🚀"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("demo") / "demo.gguf")


@pytest.fixture(scope="module")
def llama(model_path: Path) -> Iterator[object]:
    model = llama_cpp.Llama(model_path=str(model_path), n_ctx=512, n_threads=2, verbose=False)
    yield model
    model.close()


def test_write_is_deterministic_and_atomic(tmp_path: Path, model_path: Path) -> None:
    again = write_demo_model(tmp_path / "again.gguf")
    assert sha256(again) == sha256(model_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.gguf"]  # no temp files left behind
    other = write_demo_model(tmp_path / "other.gguf", DemoModelSpec(seed=1))
    assert sha256(other) != sha256(model_path)


def test_metadata(model_path: Path) -> None:
    reader = gguf.GGUFReader(model_path)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.ggml.model"] == "llama"
    assert fields["llama.context_length"] == 2048
    assert fields["llama.pooling_type"] == gguf.PoolingType.MEAN
    assert "<|im_start|>" in fields["tokenizer.chat_template"]
    tokens = fields["tokenizer.ggml.tokens"]
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and tokens[3] == "<0x00>" and tokens[258] == "<0xFF>"
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}
    for forbidden in ("general.date", "general.uuid", "general.source.url"):
        assert forbidden not in fields


def test_ensure_demo_model_caches_by_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALAI_CACHE_DIR", str(tmp_path / "cache"))
    first = ensure_demo_model()
    assert first.parent == tmp_path / "cache" and first.name == demo_model_filename()
    mtime = first.stat().st_mtime_ns
    assert ensure_demo_model() == first and first.stat().st_mtime_ns == mtime  # not rewritten
    assert demo_model_filename(DemoModelSpec(seed=1)) != first.name
    assert demo_model_filename(BENCH_SPEC) != first.name
    with pytest.raises(ValueError):
        DemoModelSpec(dim=66, n_heads=4)


def test_llama_cpp_greedy_generation_is_deterministic(llama) -> None:
    first = llama.create_completion("Hello world", max_tokens=32, temperature=0)
    second = llama.create_completion("Hello world", max_tokens=32, temperature=0)
    assert first["usage"]["completion_tokens"] == 32
    assert first["choices"][0]["finish_reason"] == "length"
    text = first["choices"][0]["text"]
    assert text == second["choices"][0]["text"]
    assert len(set(text)) > 5  # varied output, not one token repeated
    streamed = "".join(
        chunk["choices"][0]["text"]
        for chunk in llama.create_completion("Hello world", max_tokens=32, temperature=0, stream=True)
    )
    assert streamed == text


def test_llama_cpp_chat_uses_gguf_template(llama) -> None:
    reply = llama.create_chat_completion(
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        max_tokens=8,
        temperature=0,
    )
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] == 8
    assert reply["choices"][0]["message"]["content"]


def test_llama_cpp_tokenize_round_trip(llama) -> None:
    tokens = llama.tokenize(MULTIBYTE.encode(), add_bos=True)
    assert tokens[0] == llama.token_bos()
    assert len(tokens) > len(MULTIBYTE)  # multi-byte characters span several byte tokens
    assert llama.detokenize(tokens).decode() == MULTIBYTE
    # Without BOS, SentencePiece's dummy prefix shows up as a leading space.
    assert llama.detokenize(llama.tokenize(MULTIBYTE.encode(), add_bos=False)).decode() == " " + MULTIBYTE


def test_llama_cpp_embedding(model_path: Path) -> None:
    model = llama_cpp.Llama(model_path=str(model_path), n_ctx=512, n_threads=2, embedding=True, verbose=False)
    try:
        result = model.create_embedding(["hello world", MULTIBYTE])
    finally:
        model.close()
    vectors = [item["embedding"] for item in result["data"]]
    assert [len(v) for v in vectors] == [64, 64]
    assert vectors[0] != vectors[1]


def test_gpt4all_generates(model_path: Path) -> None:
    model = gpt4all.GPT4All(
        model_name=model_path.name,
        model_path=model_path.parent,
        allow_download=False,
        device="cpu",
        n_threads=2,
    )
    try:
        first = model.generate("Hello world", max_tokens=16, temp=0)
        second = model.generate("Hello world", max_tokens=16, temp=0)
        streamed = "".join(model.generate("Hello world", max_tokens=16, temp=0, streaming=True))
    finally:
        model.close()
    assert first and first == second == streamed
