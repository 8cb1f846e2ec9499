"""The llama-cpp adapter on real GGUF files (the generated demo model, and a variant of it with
one very long token): pieces of any length, top logprobs, token-id embeddings, which contexts
an instance opens and closes, and a prompt evaluation that stops when told.
"""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from localai_runtime.backends import LocalSettings
from localai_runtime.backends.llama_cpp import LlamaCppBackend
from localai_runtime.backends.llama_cpp import instance as instance_module
from localai_runtime.backends.llama_cpp import templates as templates_module
from localai_runtime.demo_model import DemoModelSpec, write_demo_model

LONG_PIECE = "x" * 300  # longer than the 256-byte buffer pieces are first read into


@pytest.fixture(scope="module")
def long_token_model(tmp_path_factory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("long") / "long.gguf", DemoModelSpec(extra_pieces=(LONG_PIECE,)))


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("demo") / "demo.gguf")


def settings(path: Path, **values) -> LocalSettings:
    return LocalSettings("llama-cpp", path, {"backend": "llama-cpp", "threads": 2, "context_size": 512, **values})


def never() -> bool:
    return False


def text_of(pieces) -> str:
    return "".join(piece.text for piece in pieces)


def test_a_token_longer_than_256_bytes_keeps_its_text(long_token_model):
    vocab_only = llama_cpp.Llama(model_path=str(long_token_model), vocab_only=True, verbose=False)
    long_token = vocab_only.n_vocab() - 1  # the extra piece is the vocabulary's last token
    vocab_only.close()
    instance = LlamaCppBackend().load(settings(long_token_model))
    try:
        request = {"prompt": "hi", "max_tokens": 2, "temperature": 0, "logit_bias": {str(long_token): 100}}
        assert text_of(instance.complete(request, never)) == LONG_PIECE * 2
        assert text_of(instance.complete(request, never)) == LONG_PIECE * 2  # and so it stays, cached
    finally:
        instance.close()


def test_top_logprobs_are_the_most_likely_tokens_in_order(demo_model):
    instance = LlamaCppBackend().load(settings(demo_model))
    try:
        def entries(top: int) -> list[dict]:
            request = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "temperature": 0,
                       "logprobs": True, "top_logprobs": top}
            return [entry for piece in instance.chat(request, never) for entry in piece.logprobs or []]

        five, two = entries(5), entries(2)
        assert len(five) == len(two) == 6
        for wide, narrow in zip(five, two, strict=True):
            ranked = [t["logprob"] for t in wide["top_logprobs"]]
            assert len(ranked) == 5 and ranked == sorted(ranked, reverse=True)
            assert [t["token"] for t in wide["top_logprobs"][:2]] == [t["token"] for t in narrow["top_logprobs"]]
            assert ranked[:2] == pytest.approx([t["logprob"] for t in narrow["top_logprobs"]], abs=1e-5)
            assert wide["top_logprobs"][0]["token"] == wide["token"]  # greedy: the chosen one is the best
            assert wide["logprob"] == wide["top_logprobs"][0]["logprob"]
    finally:
        instance.close()


def test_token_ids_are_embedded_as_given(demo_model):
    instance = LlamaCppBackend().load(settings(demo_model), frozenset({"createEmbedding"}))
    tokenizer = llama_cpp.Llama(model_path=str(demo_model), vocab_only=True, verbose=False)
    try:
        text = "hello world"
        canonical = tokenizer.tokenize(text.encode())  # as embeddings tokenize text
        by_character = [tokenizer.token_bos()] + [t for c in text for t in tokenizer.tokenize(c.encode(), add_bos=False)]
        assert by_character != canonical  # the same text in other tokens
        [as_text], _ = instance.embed([text])
        (as_ids, as_other_ids), used = instance.embed([canonical, by_character])
        assert used == len(canonical) + len(by_character)
        assert np.allclose(as_text, as_ids)
        assert not np.allclose(as_ids, as_other_ids)  # detokenizing and tokenizing again would make them equal
    finally:
        tokenizer.close()
        instance.close()


class Counted(llama_cpp.Llama):
    opened: list[Counted] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.embedding = bool(kwargs.get("embedding"))
        self.was_closed = False
        Counted.opened.append(self)

    def close(self) -> None:
        self.was_closed = True
        super().close()


@pytest.fixture
def counted(monkeypatch):
    Counted.opened = []
    monkeypatch.setattr(instance_module, "Llama", Counted)
    return Counted.opened


def test_an_embedding_only_registration_opens_only_an_embedding_context(demo_model, counted):
    instance = LlamaCppBackend().load(settings(demo_model), frozenset({"createEmbedding"}))
    vectors, _ = instance.embed(["hi"])
    instance.close()
    assert [llama.embedding for llama in counted] == [True] and counted[0].was_closed
    assert len(vectors[0]) == 64


def test_a_context_opened_before_a_failing_step_is_closed(demo_model, counted, monkeypatch):
    with pytest.raises(RuntimeError, match="not valid Jinja"):
        LlamaCppBackend().load(settings(demo_model, template="{% if %}"))
    assert len(counted) == 1 and counted[0].was_closed

    def failing_formatter(*args, **kwargs):
        raise ValueError("the template needs a token this vocabulary lacks")

    monkeypatch.setattr(templates_module, "Jinja2ChatFormatter", failing_formatter)  # any step after the open
    with pytest.raises(ValueError, match="lacks"):
        LlamaCppBackend().load(settings(demo_model))
    assert len(counted) == 2 and counted[1].was_closed


def test_prompt_evaluation_stops_within_a_batch_when_told(demo_model):
    instance = LlamaCppBackend().load(settings(demo_model, n_batch=16))
    polls = 0

    def after_two_batches() -> bool:
        nonlocal polls
        polls += 1
        return polls > 2

    try:
        prompt = " ".join(["story"] * 60)
        assert list(instance.complete({"prompt": prompt, "max_tokens": 4}, after_two_batches)) == []
        assert len(instance.tokenize(prompt)) > 200
        assert instance._generator.n_tokens <= 2 * 16  # two batches were evaluated, not the whole prompt
        # the next request reuses what was evaluated and generates normally
        assert len(text_of(instance.complete({"prompt": prompt, "max_tokens": 4, "temperature": 0}, never))) > 0
    finally:
        instance.close()


def test_strings_generated_under_a_schema_are_valid_json(demo_model):
    """A raw control character inside a JSON string is not JSON: llama-cpp-python's converter let
    the model write one (a tab, a newline) in call arguments and structured answers."""
    import json

    from localai_runtime.backends.llama_cpp.json_grammar import schema_to_gbnf

    schema = {"type": "object", "properties": {"note": {"type": "string", "maxLength": 40}}, "required": ["note"]}
    assert r'[^"\\\x7F\x00-\x1F]' in schema_to_gbnf(json.dumps(schema))
    instance = LlamaCppBackend().load(settings(demo_model))
    try:
        tool = {"type": "function", "function": {"name": "save", "parameters": schema}}
        for seed in range(40):
            calls = {"model": "demo", "messages": [{"role": "user", "content": "Save a note"}], "tools": [tool],
                     "tool_choice": "required", "temperature": 1.5, "seed": seed, "max_tokens": 200}
            pieces = list(instance.chat(calls, never))
            arguments = "".join(d.arguments for p in pieces for d in p.tool_calls or () if d.arguments)
            assert isinstance(json.loads(arguments)["note"], str), arguments  # json.loads is strict
            answer = {"model": "demo", "messages": [{"role": "user", "content": "A note"}], "temperature": 1.5,
                      "seed": seed, "max_tokens": 200,
                      "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}
            assert isinstance(json.loads(text_of(instance.chat(answer, never)))["note"], str)
    finally:
        instance.close()
