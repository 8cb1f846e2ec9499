"""The llama-cpp adapter on real GGUF files (the generated demo model, and a variant of it with
one very long token): pieces of any length, top logprobs, token-id embeddings, which contexts
an instance opens and closes, and a prompt evaluation that stops when told.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import llama_cpp
import numpy as np
import pytest
import yaml

from localai_runtime.backends import LocalSettings
from localai_runtime.backends.llama_cpp import LlamaCppBackend
from localai_runtime.backends.llama_cpp import instance as instance_module
from localai_runtime.backends.llama_cpp import templates as templates_module
from localai_runtime.backends.llama_cpp.engine import shared as shared_module
from localai_runtime.demo_model import DemoModelSpec, write_demo_model
from localai_runtime.tools.request import NO_TOOLS, tool_request
from localai_runtime.tools.response_format import TEXT, chat_response_format
from tests.conftest import wait_until

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
            return [entry for piece in instance.chat(request, never, NO_TOOLS, TEXT) for entry in piece.logprobs or []]

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


def loaded_now(path: Path) -> list:
    """The shared models loaded from ``path`` now (servers of other test modules load others)."""
    return [model for key, model in shared_module._models.items() if key[0] == str(path)]


def test_an_embedding_only_registration_opens_only_an_embedding_context(demo_model):
    instance = LlamaCppBackend().load(settings(demo_model), frozenset({"createEmbedding"}))
    shared = instance._shared
    vectors, _ = instance.embed(["hi"])
    assert shared._engine is None and shared._embedder is not None
    instance.close()
    assert shared.weights is None and shared._embedder is None and not loaded_now(demo_model)
    assert len(vectors[0]) == 64


def test_a_model_loaded_before_a_failing_step_is_released(demo_model, monkeypatch):
    loaded = []

    def sharing(settings):
        loaded.append(shared_module.share(settings))
        return loaded[-1]

    monkeypatch.setattr(instance_module, "share", sharing)
    with pytest.raises(RuntimeError, match="not valid Jinja"):
        LlamaCppBackend().load(settings(demo_model, template="{% if %}"))
    assert len(loaded) == 1 and loaded[0].weights is None and not loaded_now(demo_model)

    def failing_formatter(*args, **kwargs):
        raise ValueError("the template needs a token this vocabulary lacks")

    monkeypatch.setattr(templates_module, "Jinja2ChatFormatter", failing_formatter)  # any step after the load
    with pytest.raises(ValueError, match="lacks"):
        LlamaCppBackend().load(settings(demo_model))
    assert len(loaded) == 2 and loaded[1].weights is None and not loaded_now(demo_model)


def test_registrations_loading_a_model_the_same_way_share_it(demo_model):
    chat = LlamaCppBackend().load(settings(demo_model), frozenset({"createChatCompletion"}))
    embeddings = LlamaCppBackend().load(settings(demo_model), frozenset({"createEmbedding"}))
    other = LlamaCppBackend().load(settings(demo_model, context_size=256))
    try:
        assert chat._shared is embeddings._shared and chat._shared is not other._shared
        assert embeddings.embed(["hi"])[1] > 0 and text_of(chat.chat({"messages": [{"role": "user", "content": "hi"}],
                                                                       "max_tokens": 3}, never, NO_TOOLS, TEXT))
        embeddings.close()
        assert chat._shared.weights is not None  # still used by chat
    finally:
        chat.close()
        other.close()
    assert not loaded_now(demo_model)


def test_prompt_evaluation_stops_within_a_batch_when_told(demo_model):
    instance = LlamaCppBackend().load(settings(demo_model, n_batch=16))

    def after_two_batches() -> bool:
        return instance.engine.steps >= 2

    try:
        prompt = " ".join(["story"] * 60)
        assert list(instance.complete({"prompt": prompt, "max_tokens": 4}, after_two_batches)) == []
        assert len(instance.tokenize(prompt)) > 200
        slot = instance.engine.slots[0]
        assert slot.job is None and 0 < len(slot.cached) <= 2 * 16  # a batch or two, not the whole prompt
        # the next request reuses what was evaluated and generates normally
        pieces = list(instance.complete({"prompt": prompt, "max_tokens": 4, "temperature": 0}, never))
        assert "".join(p.text for p in pieces)
        assert 0 < pieces[-1].cached_tokens <= 2 * 16
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
            pieces = list(instance.chat(calls, never, tool_request(calls), TEXT))
            arguments = "".join(d.arguments for p in pieces for d in p.tool_calls or () if d.arguments)
            assert isinstance(json.loads(arguments)["note"], str), arguments  # json.loads is strict
            answer = {"model": "demo", "messages": [{"role": "user", "content": "A note"}], "temperature": 1.5,
                      "seed": seed, "max_tokens": 200,
                      "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}
            assert isinstance(json.loads(text_of(instance.chat(answer, never, NO_TOOLS, chat_response_format(answer))))["note"], str)
    finally:
        instance.close()


@pytest.mark.parametrize("parameters", [{}, {"description": "What to run"}])
def test_a_tool_whose_parameters_constrain_nothing_is_called_with_an_object(demo_model, parameters):
    """At the root, a schema that constrains nothing is an object (a call's arguments always are);
    below it, one is any JSON value (Claude Code's Workflow tool gives its ``args`` only a
    description, which llama-cpp-python's converter refused)."""
    import json

    from localai_runtime.backends.llama_cpp.json_grammar import schema_to_gbnf

    nested = {"type": "object", "properties": {"args": {"description": "anything"}}, "required": ["args"]}
    assert "Unrecognized" not in schema_to_gbnf(json.dumps(nested))
    instance = LlamaCppBackend().load(settings(demo_model))
    whole = 0
    try:
        for schema, seeds in ((parameters, range(12)), (nested, range(4))):
            tool = {"type": "function", "function": {"name": "run", "parameters": schema}}
            for seed in seeds:
                calls = {"model": "demo", "messages": [{"role": "user", "content": "Run it"}], "tools": [tool],
                         "tool_choice": "required", "temperature": 1.5, "seed": seed, "max_tokens": 300}
                pieces = list(instance.chat(calls, never, tool_request(calls), TEXT))
                arguments = "".join(d.arguments for p in pieces for d in p.tool_calls or () if d.arguments)
                if pieces[-1].finish_reason == "length":
                    continue  # cut off: its arguments are not whole
                assert isinstance(json.loads(arguments), dict), arguments
                whole += 1
    finally:
        instance.close()
    assert whole >= 8, f"only {whole} of 16 calls ended before max_tokens"


def test_a_preloaded_model_is_loaded_while_the_server_starts_and_then_handed_over(demo_model, tmp_path):
    from localai_runtime.backends.prewarm import prewarm

    values = {"backend": "llama-cpp", "model_file": str(demo_model), "threads": 2, "context_size": 512,
              "parallel": 2, "preload": True}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump_all([  # two registrations loading it the same way
        {"registration": {"model": name, "operations": ["createChatCompletion"]}, "local_settings": values}
        for name in ("demo", "demo-too")]))
    thread = prewarm(tmp_path)
    wait_until(lambda: loaded_now(demo_model) and loaded_now(demo_model)[0]._engine is not None, "the prewarm loaded it")
    prewarmed = loaded_now(demo_model)[0]
    instance = LlamaCppBackend().load(LocalSettings("llama-cpp", demo_model, values), frozenset({"createChatCompletion"}))
    try:
        assert instance._shared is prewarmed  # the registration's load found it loaded
        thread.join(timeout=10)
        assert not thread.is_alive() and prewarmed.references == 1  # the prewarm let go of its own
    finally:
        instance.close()
    assert prewarmed.weights is None and not loaded_now(demo_model)


_LOAD_PROBE = """
import sys
from localai_runtime.backends import LocalSettings
from localai_runtime.backends.llama_cpp.engine import log
from localai_runtime.backends.llama_cpp.engine.shared import share
for path in sys.argv[2:]:
    try:
        share(LocalSettings("llama-cpp", path, {"verbose": sys.argv[1] == "verbose"})).release()
    except RuntimeError as exc:
        print("refused:", exc)
print("C callback:", log.WARNINGS_IN_C is not None)
"""


def test_llama_cpp_logs_only_warnings_and_errors_through_a_c_callback_unless_verbose(demo_model, tmp_path):
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(demo_model.read_bytes()[: demo_model.stat().st_size // 2])
    quiet = subprocess.run([sys.executable, "-c", _LOAD_PROBE, "quiet", str(demo_model), str(damaged)],
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "C callback: True" in quiet.stdout  # the extension is built with the package
    assert "refused:" in quiet.stdout and str(damaged) in quiet.stdout
    assert "llama_model_loader" not in quiet.stderr  # the 1,500 lines of a load are dropped in C...
    assert "error loading model" in quiet.stderr  # ...and llama.cpp's errors still reach stderr
    verbose = subprocess.run([sys.executable, "-c", _LOAD_PROBE, "verbose", str(demo_model)],
                             capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 0, verbose.stderr
    assert "llama_model_loader: loaded meta data" in verbose.stderr


def test_start_up_goes_on_once_the_early_load_has_done_its_python_part(demo_model, tmp_path):
    # Python runs one thread at a time: prewarm() returns once its thread imported llama-cpp (and
    # llama.cpp loads in C), so the load does not wait for the main thread's imports.
    probe = ("import sys; from pathlib import Path; from localai_runtime.backends.prewarm import prewarm; "
             "prewarm(Path(sys.argv[1])); print('llama_cpp' in sys.modules)")
    (tmp_path / "loads").mkdir()
    (tmp_path / "loads" / "demo.yaml").write_text(yaml.safe_dump({
        "registration": {"model": "demo", "operations": ["createChatCompletion"]},
        "local_settings": {"backend": "llama-cpp", "model_file": str(demo_model), "preload": True}}))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "demo.yaml").write_text(yaml.safe_dump({
        "registration": {"model": "demo", "operations": ["createChatCompletion"]},
        "local_settings": {"backend": "llama-cpp", "model_file": str(demo_model)}}))
    for folder, imported in (("loads", "True"), ("none", "False")):
        done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / folder)], capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == imported, (folder, done.stdout, done.stderr)
