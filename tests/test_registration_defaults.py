"""A registration's request defaults are weighed as a request's fields are: a value that asks for
nothing (``reasoning_effort: none``, ``service_tier: auto``) is accepted at start-up where a
request sending it is, a hint (``service_tier: flex``) is accepted and reported in
``x-localai-dropped-fields`` of each answer, and a field the backend cannot honour is still a
start-up error. On the real llama-cpp backend (the built-in demo model) and a live server.
"""

from __future__ import annotations

import logging
import textwrap

import pytest

from localai_runtime.backends import BackendRegistry
from localai_runtime.errors import SpecError
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.spec.request_schemas import RequestSchemas
from tests.conftest import live_server

REGISTRATION = """
registration: {{model: d, operations: [{operations}]}}
local_settings: {{backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 512, parallel: 1}}
request_defaults: {defaults}
"""


def load(directory, built_spec, defaults: str, operations: str = "createChatCompletion"):
    (directory / "d.yaml").write_text(textwrap.dedent(REGISTRATION.format(defaults=defaults, operations=operations)))
    return load_registrations(directory, RequestSchemas(built_spec), BackendRegistry.from_entry_points())


@pytest.mark.parametrize(("defaults", "operations"), [
    ("{reasoning_effort: none, service_tier: auto, verbosity: medium, max_tokens: 4}", "createChatCompletion"),
    ("{reasoning_effort: minimal, service_tier: default}", "createChatCompletion"),
    ("{service_tier: auto, max_output_tokens: 16}", "createResponse"),
])
def test_defaults_that_ask_for_nothing_load_as_a_request_sending_them_is_served(tmp_path, built_spec, defaults,
                                                                                operations):
    registration = load(tmp_path, built_spec, defaults, operations).lookup(operations, "d")
    assert registration.problem is None


@pytest.mark.parametrize(("defaults", "error"), [
    ("{reasoning_effort: high}", r"request_defaults\.reasoning_effort: backend llama-cpp does not honour it"),
    ("{reasoning_effort: none, presence_penalty: 2, seed: 1, prediction: {type: content, content: x}}",
     r"request_defaults\.prediction: backend llama-cpp does not honour it"),
])
def test_defaults_that_ask_for_what_the_backend_cannot_do_are_still_start_up_errors(tmp_path, built_spec, defaults,
                                                                                    error):
    with pytest.raises(SpecError, match=error):
        load(tmp_path, built_spec, defaults)


def test_a_hint_as_a_default_is_accepted_said_at_start_up_and_reported_in_each_answer(tmp_path, built_spec, caplog):
    (tmp_path / "d.yaml").write_text(textwrap.dedent(REGISTRATION.format(
        defaults="{service_tier: flex, reasoning_effort: none, max_tokens: 2}", operations="createChatCompletion")))
    with caplog.at_level(logging.WARNING), live_server(built_spec, configs_dir=tmp_path) as live, \
            live.http() as http:
        assert any("request_defaults.service_tier: backend llama-cpp does not honour it" in record.getMessage()
                   for record in caplog.records if record.levelno == logging.WARNING)
        body = {"model": "d", "messages": [{"role": "user", "content": "hi"}]}
        for sent in ({}, {"service_tier": "priority"}, {"service_tier": "auto"}):
            answer = http.post("/v1/chat/completions", json={**body, **sent})
            assert answer.status_code == 200, answer.text
            assert answer.json()["usage"]["completion_tokens"] == 2  # the other defaults apply
            expected = None if sent.get("service_tier") == "auto" else "service_tier"
            assert answer.headers.get("x-localai-dropped-fields") == expected, sent
        reasoning = live.client().chat.completions.create(model="d", messages=body["messages"], reasoning_effort="none")
        assert reasoning.choices[0].finish_reason == "length"


@pytest.mark.parametrize("defaults", [
    "{reasoning: {effort: none}, include: [reasoning.encrypted_content], service_tier: auto}",
    "{reasoning: {effort: minimal, summary: auto}}",
])
def test_responses_defaults_that_ask_for_nothing_load_and_are_served(tmp_path, built_spec, defaults):
    (tmp_path / "d.yaml").write_text(textwrap.dedent(REGISTRATION.format(defaults=defaults,
                                                                         operations="createResponse")))
    with live_server(built_spec, configs_dir=tmp_path, data_dir=tmp_path) as live:
        raw = live.client().responses.with_raw_response.create(model="d", input="Hi", max_output_tokens=16)
    assert "x-localai-dropped-fields" not in raw.headers
    answer = raw.parse()
    assert answer.status == "incomplete" and answer.usage.output_tokens_details.reasoning_tokens == 0
    assert not [item for item in answer.output if item.type == "reasoning"]


def test_a_responses_default_asking_for_reasoning_still_stops_start_up(tmp_path, built_spec):
    with pytest.raises(SpecError, match=r"request_defaults\.reasoning: backend llama-cpp does not honour it"):
        load(tmp_path, built_spec, "{reasoning: {effort: low}}", "createResponse")
