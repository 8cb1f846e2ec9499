"""Schema-driven fuzzing of Anthropic's Messages operations: schemathesis generates requests from
the served ``/anthropic/openapi.json`` (valid and invalid ones), sent to the demo model (capped at
two tokens) under the shipped policy and under ``drop``. Checks: no 5xx; every error is
Anthropic's envelope and validates against the document's ``ErrorResponse``; every 2xx body, and
every event of a stream, validates against its schema in the document; a valid request to the
lenient registration is served."""

from __future__ import annotations

import json

import pytest
import requests
import schemathesis
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.conftest import ResponseSchemas, live_server

OPERATIONS = {"messages_post": "Message", "beta_messages_post": "BetaMessage",
              "messages_count_tokens_post": "CountMessageTokensResponse",
              "beta_messages_count_tokens_post": "BetaCountMessageTokensResponse"}
STREAM_EVENTS = {"messages_post": "MessageStreamEvent", "beta_messages_post": "BetaMessageStreamEvent"}
CONFIGS = """
registration: {model: demo, operations: [messages_post, beta_messages_post]}
local_settings: {backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 2048, parallel: 4}
request_overrides: {max_tokens: 2}
---
registration: {model: demo-lenient, operations: [messages_post, beta_messages_post]}
local_settings: {backend: llama-cpp, model_file: builtin:demo, threads: 2, context_size: 2048, parallel: 4}
request_overrides: {max_tokens: 2}
policy: {unsupported_parameters: drop, unknown_parameters: drop}
"""


@pytest.fixture(scope="module")
def fuzzed(built_spec, tmp_path_factory):
    configs = tmp_path_factory.mktemp("configs")
    (configs / "demo.yaml").write_text(CONFIGS)
    with live_server(built_spec, configs_dir=configs) as live:
        schema = schemathesis.openapi.from_url(live.url + "/anthropic/openapi.json")
        operations = {op.definition.raw["operationId"]: op for op in (r.ok() for r in schema.get_all_operations())
                      if op.definition.raw["operationId"] in OPERATIONS}
        yield live, operations, ResponseSchemas.served_by(live, "/anthropic/openapi.json")


def check(schemas: ResponseSchemas, operation_id: str, response: requests.Response) -> str:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        schemas.check("ErrorResponse", body)
        return body["error"]["type"]
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [json.loads(line[6:]) for line in response.text.split("\n") if line.startswith("data: ")]
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop", response.text[-500:]
        for event in events:
            if event["type"] != "ping":
                schemas.check(STREAM_EVENTS[operation_id], event)
        return "stream"
    schemas.check(OPERATIONS[operation_id], response.json())
    return "json"


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_messages_answer_their_schema_or_anthropic_errors(fuzzed, operation_id):
    live, operations, schemas = fuzzed
    cases = st.one_of(operations[operation_id].as_strategy(GenerationMode.POSITIVE).map(lambda c: (c, True)),
                      operations[operation_id].as_strategy(GenerationMode.NEGATIVE).map(lambda c: (c, False)))
    outcomes: dict[tuple[bool, str, str], int] = {}

    @settings(max_examples=60, derandomize=True, database=None, deadline=None, phases=[Phase.explicit, Phase.generate])
    @given(generated=cases, model=st.sampled_from(["demo", "demo-lenient"]), stream=st.booleans())
    def run(generated, model, stream):
        case, positive = generated
        if isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = model
            if stream and "count_tokens" not in operation_id:
                case.body["stream"] = True
        response = session.request(**case.as_transport_kwargs(base_url=live.url), timeout=60)
        try:
            outcome = check(schemas, operation_id, response)
        except AssertionError as exc:
            exc.add_note(case.as_curl_command()[:3000])
            raise
        outcomes[positive, model, outcome] = outcomes.get((positive, model, outcome), 0) + 1

    with requests.Session() as session:
        run()
    served = sum(count for (_, _, got), count in outcomes.items() if got in ("json", "stream"))
    refused = sum(count for (positive, _, got), count in outcomes.items() if not positive and got != "json")
    assert served >= 1 and refused >= 1, outcomes
