"""Registration files: loading, keys, and start-up errors that name file, registration and path."""

from __future__ import annotations

import textwrap

import pytest

from localai_runtime.errors import InvalidRequestError, ModelNotFoundError, SpecError
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.fake_backend import registry

GOOD = """
registration: {model: m1, operations: [createChatCompletion, createCompletion]}
local_settings: {backend: echo, threads: 2, delay_s: 0}
request_defaults:
  temperature: 0.5
  x-localai-extensions: {top_k: 3}
request_overrides: {max_tokens: 16}
"""


@pytest.fixture(scope="module")
def schemas(built_spec):
    return RequestSchemas(built_spec)


def load(tmp_path, schemas, **files):
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return load_registrations(tmp_path, schemas, registry())


def test_a_good_registration_loads_keyed_by_operation_and_model(tmp_path, schemas):
    regs = load(tmp_path, schemas, **{"a.yaml": GOOD + "---\n" + textwrap.dedent("""
        registration: {model: m1, operations: [createEmbedding]}
        local_settings: {backend: echo}
        """)})
    chat = regs.lookup("createChatCompletion", "m1")
    assert chat is regs.lookup("createCompletion", "m1")
    assert chat.defaults == {"temperature": 0.5, "x-localai-extensions": {"top_k": 3}}
    assert chat.overrides == {"max_tokens": 16}
    assert regs.lookup("createEmbedding", "m1") is not chat
    assert regs.models() == ["m1"]


def test_unknown_model_and_wrong_operation(tmp_path, schemas):
    regs = load(tmp_path, schemas, **{"a.yaml": GOOD})
    with pytest.raises(ModelNotFoundError) as missing:
        regs.lookup("createChatCompletion", "nope")
    assert (missing.value.status, missing.value.param, missing.value.code) == (404, "model", "model_not_found")
    with pytest.raises(InvalidRequestError, match="serves: createChatCompletion, createCompletion") as wrong:
        regs.lookup("createEmbedding", "m1")
    assert wrong.value.param == "model"


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD.replace("temperature: 0.5", "temprature: 0.5"),
     r"a\.yaml#0 \(model m1\): request_defaults\.temprature: unknown field for createChatCompletion"),
    (GOOD.replace("temperature: 0.5", "temperature: 5"),
     r"a\.yaml#0 \(model m1\): request_defaults for createChatCompletion: Invalid value for 'request_defaults\.temperature'"),
    (GOOD.replace("top_k: 3", "top_k: -3"), r"'request_defaults\.x-localai-extensions\.top_k'"),
    (GOOD.replace("top_k: 3", "topk: 3"), r"'request_defaults\.x-localai-extensions\.topk'"),
    (GOOD.replace("max_tokens: 16", "max_tokens: [1]"), r"'request_overrides\.max_tokens'"),
    (GOOD.replace("temperature: 0.5", "presence_penalty: 0.5"),
     r"request_defaults\.presence_penalty: backend echo does not honour it for createChatCompletion"),
    (GOOD.replace("threads: 2", "threads: 0"), r"a\.yaml#0 \(model m1\): Invalid value for 'local_settings\.threads'"),
    (GOOD.replace("threads: 2", "thread: 2"), r"'local_settings\.thread'"),
    (GOOD.replace("backend: echo", "backend: nope"), r"local_settings\.backend: unknown backend 'nope'; available: echo"),
    (GOOD.replace("createCompletion]", "createCompletions]"), r"unknown operationId 'createCompletions'"),
    (GOOD.replace("createCompletion]", "listModels]"), r"listModels takes no JSON request body"),
    (GOOD.replace("registration:", "registraton:"), r"a\.yaml#0: Unknown parameter: 'registraton'"),
    (GOOD + "request_defaults_typo: {}\n", r"a\.yaml#0: Unknown parameter: 'request_defaults_typo'"),
    (GOOD.replace("temperature: 0.5", "model: other"), r"request_defaults\.model: the model is the registration's own name"),
])
def test_errors_name_file_registration_and_path(tmp_path, schemas, text, expected):
    with pytest.raises(SpecError, match=expected):
        load(tmp_path, schemas, **{"a.yaml": text})


def test_two_registrations_for_one_key_name_both_files(tmp_path, schemas):
    with pytest.raises(SpecError, match=r"b\.yaml#0 \(model m1\): model 'm1' is already registered for createChatCompletion by .*a\.yaml#0"):
        load(tmp_path, schemas, **{"a.yaml": GOOD, "b.yaml": """
            registration: {model: m1, operations: [createChatCompletion]}
            local_settings: {backend: echo}
            """})


def test_missing_model_file_is_a_problem_not_a_crash(tmp_path, schemas):
    regs = load(tmp_path, schemas, **{"a.yaml": GOOD.replace("threads: 2", "threads: 2, model_file: missing.gguf")})
    registration = regs.lookup("createChatCompletion", "m1")
    assert registration.problem.startswith("model file not found: ")
    assert str(tmp_path / "missing.gguf") in registration.problem


def test_shipped_examples_pass_check(built_spec):
    from localai_runtime.backends import BackendRegistry
    from localai_runtime.settings import resource_dir

    regs = load_registrations(resource_dir("configs"), RequestSchemas(built_spec), BackendRegistry.from_entry_points())
    assert {r.settings.backend for r in regs.all} == {"llama-cpp", "gpt4all"}
    assert [r for r in regs.all if r.problem] == []


RESPONSES = """
registration: {model: r1, operations: [createResponse]}
local_settings: {backend: echo}
"""


def test_a_responses_registration_needs_no_defaults_and_derives_what_it_honours(tmp_path, schemas):
    from localai_runtime.serving.fields import honoured

    registration = load(tmp_path, schemas, **{"a.yaml": RESPONSES}).lookup("createResponse", "r1")
    served = honoured(registration.backend, "createResponse")
    assert {"input", "instructions", "max_output_tokens", "temperature", "previous_response_id",
            "x-localai-extensions.top_k"} <= served
    assert not {"tools", "text", "reasoning"} & served  # the echo backend honours no tools or formats in chat


@pytest.mark.parametrize(("defaults", "expected"), [
    ("{temperature: 5}", r"request_defaults for createResponse: Invalid value for 'request_defaults\.temperature'"),
    ("{max_output_tokens: 2}", r"'request_defaults\.max_output_tokens'"),
    ("{max_tokens: 16}", r"request_defaults\.max_tokens: unknown field for createResponse"),
    ("{tools: []}", r"request_defaults\.tools: backend echo does not honour it for createResponse"),
])
def test_responses_defaults_are_checked_naming_only_what_the_operator_wrote(tmp_path, schemas, defaults, expected):
    with pytest.raises(SpecError, match=expected) as caught:
        load(tmp_path, schemas, **{"a.yaml": RESPONSES + f"request_defaults: {defaults}\n"})
    assert "prompt" not in str(caught.value) and "'x'" not in str(caught.value)
