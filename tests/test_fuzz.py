"""Schema-driven fuzzing: schemathesis generates requests from the served ``/openapi.json``.

A live server answers cases that schemathesis 4 builds from the document the server itself
serves, positive and negative, a fixed number per operation, derandomized (the same cases every
run) and without shrinking. Its registrations: ``echo`` and ``lenient`` on the echo backend
(tests/fake_backend.py), and the shipped ``demo`` registrations (configs/demo-llama-cpp.yaml,
the generated demo GGUF through real llama-cpp-python), one registration per operation there
with a cost cap (``DEMO_CAPS``: two tokens, one choice) as ``request_overrides``, served as
``demo`` with the shipped policy and as ``demo-lenient`` with the drop policy. Models and
streaming come by turns. Every implemented operation is fuzzed (createResponse like the other
generating operations; the stored-state operations of Responses and Conversations with the ids
schemathesis makes up), plus a fixed sample of unimplemented ones. Checks:

- no 5xx, except 501 ``not_implemented`` for an operation without a handler;
- every error body is exactly OpenAI's envelope ``{"error": {message, type, param, code}}``;
- every 2xx JSON body validates against its response schema in the served document; every
  event of a 2xx ``text/event-stream`` is a chunk that validates against the stream schema, or
  an error envelope, and the stream ends with ``[DONE]`` (a Responses stream, with its final
  ``response.completed``, ``response.incomplete`` or ``response.failed`` event);
- a positive (schema-valid) case sent to the ``lenient`` registration, which drops what the
  backend does not honour, is served (2xx); one sent to ``demo`` (the shipped policy: refuse
  what is unknown or not honoured) or ``demo-lenient`` is served or refused with a 400 naming
  the field (unknown, only for ``demo``; not honoured by llama.cpp, a content part it cannot
  take, a token id outside the vocabulary, a prompt longer than the context); one naming an
  unregistered model is 404 ``model_not_found`` (an empty name is 400 "You must provide a
  model parameter"). For createResponse, on any registration, a positive case is served or
  refused with a 400 naming what it cannot take (input items other than messages, calls and
  their outputs; both a previous response and a conversation), or 404 for the made-up
  ``previous_response_id`` or ``conversation`` it names; its ``input``, optional in the schema,
  is given when schemathesis leaves it out.

Stateful: the served document declares no OpenAPI ``links``. schemathesis's dependency
analysis infers one from the response schemas, ``listModels`` (``data[].id``) to
``retrieveModel`` (``{model}``), and :func:`test_stateful_listed_models_are_retrievable` runs
its state machine (listing, then retrieving what was listed) with the same checks. The
generating operations produce nothing another operation takes, so no other link applies.

Notes on schemathesis and this document:

- OpenAPI 3.1 needs no flag: schemathesis 4 picks its 3.1 adapter from ``openapi: 3.1.0``
  (the ``experimental`` OpenAPI 3.1 switch of schemathesis 3 is gone).
- schemathesis never guesses a registered model name, so most cases for the generating
  operations and ``retrieveModel`` get ``model`` replaced by a registered one (``MODELS``); the
  others answer 404 ``model_not_found``. A case hypothesis replays keeps its model and stream.
- Requests are sent with ``requests`` from ``case.as_transport_kwargs()`` rather than with
  ``case.call()``, which stops reading an event stream after ``max-stream-events``.
- Responses are validated by :class:`tests.conftest.ResponseSchemas`: jsonschema's Draft
  2020-12 validator over the served document as fetched (schemathesis resolves references in
  the copy it loaded), after the tests' own translation of the 3.0 ``nullable: true`` that
  OpenAI's document still mixes in; not with schemathesis's ``response_schema_conformance``,
  which ignores ``nullable``, and not with the server's own validation code.
- No hypothesis health check is suppressed: with these example counts, case generation
  passes all of them (measured on 2 cores, also while another test run shared them).
- schemathesis reads ``nullable: true`` beside ``oneOf`` without a ``type`` as "null allowed";
  the server follows OpenAPI 3.0.3 (``nullable`` only widens an explicit ``type``) and answers
  400. Two request fields are written that way (``NULL_REFUSED``); positive cases that set them
  to null are exempt from the "served" check.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import textwrap
from collections import Counter

import pytest
import requests
import schemathesis
import yaml
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from localai_runtime.backends import BackendRegistry
from localai_runtime.settings import resource_dir
from tests.conftest import ResponseSchemas, live_server
from tests.fake_backend import EchoBackend

STREAMING = ("createChatCompletion", "createCompletion", "createResponse")
GENERATING = (*STREAMING, "createEmbedding")
STORED_STATE = ("getResponse", "deleteResponse", "cancelResponse", "listInputItems", "createConversation",
                "getConversation", "updateConversation", "deleteConversation", "createConversationItems",
                "listConversationItems", "getConversationItem", "deleteConversationItem")
STATEFUL = (*GENERATING, "listModels", "retrieveModel", "listRegistrations", "getRoot", "getHealth", "getReadiness")
TOKENS = ("tokenize", "detokenize")
IMPLEMENTED = (*STATEFUL, *STORED_STATE, *TOKENS, "getMetrics", "reloadConfiguration")
UNIMPLEMENTED_SAMPLE = 30
EXAMPLES = {**dict.fromkeys(GENERATING, 300), "retrieveModel": 50}
OTHER_EXAMPLES = 30
UNIMPLEMENTED_EXAMPLES = 6
STATEFUL_EXAMPLES = 20
MODELS = ("echo", "lenient", "demo", "demo-lenient")
LENIENT = {"unsupported_parameters": "drop", "unknown_parameters": "drop"}
RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")
NULL_REFUSED = {"createCompletion": "prompt", "createChatCompletion": "prediction"}
HI = [{"role": "user", "content": "Hi"}]
ANCHORS: dict[str, list[tuple[str | None, dict]]] = {
    "createChatCompletion": [(None, {"model": "gpt-nowhere", "messages": HI})],
    "createCompletion": [(None, {"model": "gpt-nowhere", "prompt": "Hi"})],
    "createEmbedding": [(None, {"model": "gpt-nowhere", "input": "Hi"})],
    "createResponse": [(None, {"model": "gpt-nowhere", "input": "Hi"})],
    "tokenize": [("demo", {"model": "demo", "prompt": "Hi"})],
    "detokenize": [("demo", {"model": "demo", "tokens": [1, 2]})],
}
"""Positive cases run first (hypothesis's explicit phase) with the model they name, one for each
outcome a test below requires that only a lucky draw reached before: the drawn cases depend on
the whole document and on hypothesis's digest of the test, so the same 10 or 20 draws met an
unregistered model, or a valid token list, on one commit and not on the next."""
DEMO_CAPS = {
    "createChatCompletion": {"max_tokens": 2, "max_completion_tokens": 2, "n": 1},
    "messages_post": {"max_tokens": 2}, "beta_messages_post": {"max_tokens": 2},  # Anthropic's: test_messages.py
    "createCompletion": {"max_tokens": 2, "n": 1},
    "createEmbedding": {},
    "createResponse": {"max_output_tokens": 16},
    "tokenize": {},
    "detokenize": {},
}
"""request_overrides for the demo registrations: a case costs at most a prompt and two tokens."""
REFUSED = frozenset({
    "invalid_value", "invalid_type", "missing_required_parameter", "invalid_json", "missing_body",
    "integer_below_min_value", "integer_above_max_value", "decimal_below_min_value", "decimal_above_max_value",
    "string_below_min_length", "string_above_max_length", "array_below_min_length", "array_above_max_length",
    "empty_array", "object_below_min_properties", "object_above_max_properties",
})
"""The codes of a 400 for a request its schema (or this server) refuses, as the README lists them."""

CONFIGS = """
registration: {model: echo, operations: [createChatCompletion, createCompletion, createEmbedding, createResponse]}
local_settings: {backend: echo}
---
registration: {model: lenient, operations: [createChatCompletion, createCompletion, createEmbedding, createResponse]}
local_settings: {backend: echo}
policy: {unsupported_parameters: drop, unknown_parameters: drop}
"""


def demo_configs() -> str:
    """The shipped llama-cpp demo registrations, one per operation, capped by ``DEMO_CAPS``: as
    ``demo`` with the shipped policy, and as ``demo-lenient`` with the drop policy."""
    shipped = list(yaml.safe_load_all((resource_dir("configs") / "demo-llama-cpp.yaml").read_text()))
    return yaml.safe_dump_all([
        {**document, "registration": {**document["registration"], "model": model, "operations": [operation]},
         "request_overrides": {**document.get("request_overrides", {}), **DEMO_CAPS[operation]}, **policy}
        for model, policy in (("demo", {}), ("demo-lenient", {"policy": LENIENT}))
        for document in shipped for operation in document["registration"]["operations"]
    ])


class Checks:
    """Response checks against the served document."""

    def __init__(self, schemas: ResponseSchemas) -> None:
        self.schemas = schemas
        document = self.document = schemas.document
        self.locations = {
            spec["operationId"]: (path, method)
            for path, item in document["paths"].items() for method, spec in item.items()
            if isinstance(spec, dict) and "operationId" in spec
        }

    @staticmethod
    def envelope(body) -> None:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        error = body["error"]
        assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["message"], str) and error["message"], body
        assert isinstance(error["type"], str) and error["type"], body
        assert error["param"] is None or isinstance(error["param"], str), body
        assert error["code"] is None or isinstance(error["code"], str), body

    def response(self, operation_id: str, status: int, content_type: str, text: str, *, implemented: bool) -> str:
        """Check a response; returns what it was: an error code, ``json`` or ``stream``."""
        media_type = content_type.split(";")[0].strip()
        assert status < 500 or (status == 501 and not implemented), (status, text[:500])
        if status >= 400:
            assert media_type == "application/json", (status, media_type)
            body = json.loads(text)
            self.envelope(body)
            assert status != 400 or body["error"]["code"], body  # every 400 has a code
            return body["error"]["code"] or str(status)
        path, method = self.locations[operation_id]
        declared = self.document["paths"][path][method]["responses"][str(status)]["content"]
        assert media_type in declared, (status, media_type, list(declared))
        escaped = path.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/{method}/responses/{status}/content/{media_type.replace('/', '~1')}/schema"
        if media_type != "text/event-stream":
            self.schemas.check_at(pointer, json.loads(text))
            return "json"
        # SSE lines end at \n (or \r): not at the Unicode line breaks str.splitlines() also splits on
        events = [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
        if operation_id == "createResponse":  # typed events, no [DONE]: the last one says how it ended
            assert json.loads(events[-1])["type"] in RESPONSE_ENDS, text[-500:]
            events.append("[DONE]")
        assert len(events) >= 2 and events[-1] == "[DONE]", text[-500:]
        for event in map(json.loads, events[:-1]):
            if "error" in event:
                self.envelope(event)
            else:
                self.schemas.check_at(pointer, event)
        return "stream"


@pytest.fixture(scope="module")
def fuzz_server(built_spec, tmp_path_factory):
    configs = tmp_path_factory.mktemp("fuzz-configs")
    (configs / "echo.yaml").write_text(textwrap.dedent(CONFIGS))
    (configs / "demo.yaml").write_text(demo_configs())
    backends = BackendRegistry.from_entry_points()
    backends.register("echo", EchoBackend)
    with live_server(built_spec, backends=backends, configs_dir=configs) as live:
        yield live


@pytest.fixture(scope="module")
def operations(fuzz_server):
    """schemathesis's operations of the served document, by operationId."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    return {op.definition.raw["operationId"]: op for op in (result.ok() for result in schema.get_all_operations())}


@pytest.fixture(scope="module")
def checks(fuzz_server):
    return Checks(ResponseSchemas.served_by(fuzz_server))


def _pointed(case, model: str | None, stream: bool):
    """Point the case at a registered model (``None``: keep what schemathesis generated), and
    ask for a stream when it is a generating request that may (streams are rare otherwise)."""
    optional = case.operation.definition.raw["operationId"] == "createResponse"  # model is not required there
    if model is not None and isinstance(case.body, dict) and ("model" in case.body or optional):
        case.body["model"] = model
        if optional and "input" not in case.body:  # input is optional in the schema, yet needed to generate
            case.body["input"] = "Hello"
        if stream and case.operation.definition.raw["operationId"] in STREAMING:
            case.body["stream"] = True
    if model is not None and "model" in (case.path_parameters or {}):
        case.path_parameters["model"] = model
    return case


_TOOL_MESSAGE_FIELD = re.compile(r"messages\[\d+\]\.(tool_call_id|tool_calls\[\d+\]\.function\.arguments"
                                 r"|function_call\.arguments)$")


def _refused_tool_message(response) -> bool:
    """A 400 for what the schema cannot say: tool-call arguments that are not a JSON object, or a
    tool message answering no earlier call (every backend checks tool messages)."""
    if response.status_code != 400:
        return False
    return bool(_TOOL_MESSAGE_FIELD.match(response.json()["error"]["param"] or ""))


def _names_stored_state(body) -> bool:
    return isinstance(body, dict) and bool(body.get("previous_response_id") or body.get("conversation"))


def _sets_refused_null(operation_id: str, body) -> bool:
    name = NULL_REFUSED.get(operation_id)
    return isinstance(body, dict) and name in body and body[name] is None


def fuzz(operation_id: str, operations, checks: Checks, url: str, *, implemented: bool = True) -> Counter:
    """Run the operation's cases; returns how many answered what (``(positive, model, outcome)``)."""
    operation = operations[operation_id]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE).map(lambda case: (case, True)),
        operation.as_strategy(GenerationMode.NEGATIVE).map(lambda case: (case, False)),
    )
    wants_model = operation_id in (*GENERATING, *TOKENS, "retrieveModel")
    # Models and streaming by turns, not drawn: hypothesis favours the first choice of a draw.
    # A case hypothesis replays (to confirm a failure) keeps its turn, so the failure reproduces.
    turns = itertools.cycle([
        ("lenient", False), (None, False), ("demo-lenient", True), ("echo", False), ("demo", False), ("lenient", True),
        ("demo-lenient", False), (None, True), ("lenient", False), ("echo", True), ("demo", True), ("lenient", True),
        ("demo-lenient", True), ("demo-lenient", False)])
    turn_of: dict[str, tuple[str | None, bool]] = {}
    outcomes: Counter = Counter()
    anchors = [operation.Case(body=body, media_type="application/json") for _, body in ANCHORS.get(operation_id, ())]
    for case, (model, _) in zip(anchors, ANCHORS.get(operation_id, ()), strict=True):
        turn_of[f"True {case.as_curl_command()}"] = (model, False)

    @settings(
        max_examples=EXAMPLES.get(operation_id, OTHER_EXAMPLES) if implemented else UNIMPLEMENTED_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows its curl command
    )
    @given(generated=cases)
    def run(generated):
        case, positive = generated
        key = f"{positive} {case.as_curl_command()}"
        model, stream = turn_of.setdefault(key, next(turns)) if wants_model else (None, False)
        kwargs = _pointed(case, model, stream).as_transport_kwargs(base_url=url)
        response = session.request(**kwargs, timeout=30)
        try:
            outcome = checks.response(operation_id, response.status_code, response.headers.get("content-type", ""),
                                      response.text, implemented=implemented)
            if positive and operation_id not in TOKENS and not _sets_refused_null(operation_id, case.body):
                if operation_id == "createResponse" and model is not None:  # items the server cannot take,
                    named = response.status_code == 400 and response.json()["error"]["param"] is not None
                    unknown = outcome == "not_found" and _names_stored_state(case.body)  # an id never stored
                    assert outcome in ("json", "stream") or named or unknown, response.text[:500]
                elif model == "lenient":  # valid, and nothing the backend cannot honour is refused
                    assert outcome in ("json", "stream") or _refused_tool_message(response), response.text[:500]
                elif model in ("demo", "demo-lenient"):  # valid: served, or refused with a 400 naming the field
                    refused = response.status_code == 400 and response.json()["error"]["param"] is not None
                    assert outcome in ("json", "stream") or refused, response.text[:500]
                    assert model == "demo" or outcome != "unknown_parameter", response.text[:500]  # dropped
                elif model is None and operation_id in GENERATING and case.body.get("model") not in ("", None, *MODELS):
                    assert outcome == "model_not_found", response.text[:500]
        except AssertionError as exc:
            exc.add_note(f"{'positive' if positive else 'negative'} case: {case.as_curl_command()}"[:3000])
            raise
        outcomes[positive, model, outcome] += 1

    for case in anchors:
        run = example(generated=(case, True))(run)
    with requests.Session() as session:
        run()
    return outcomes


def seen(outcomes: Counter, outcome: str, **where) -> int:
    return sum(count for (positive, model, got), count in outcomes.items() if got == outcome
               and where.get("positive", positive) == positive and where.get("model", model) == model)


@pytest.mark.parametrize("operation_id", GENERATING)
def test_generating_operations_answer_conforming_bodies_and_streams_or_openai_errors(
        operation_id, operations, checks, fuzz_server):
    outcomes = fuzz(operation_id, operations, checks, fuzz_server.url)
    for model in ("lenient", "demo-lenient"):  # cases reached both backends and were validated
        assert seen(outcomes, "json", model=model) >= 1, outcomes
        if operation_id != "createEmbedding":
            assert seen(outcomes, "stream", model=model) >= 1, outcomes
    assert seen(outcomes, "model_not_found", model=None) >= 1
    assert {got for (_, _, got) in outcomes} <= {"json", "stream", "model_not_found", "unsupported_parameter",
                                                  "unknown_parameter", "context_length_exceeded", "not_found",
                                                  *REFUSED}, outcomes


def test_retrieve_model_finds_registered_names_only(operations, checks, fuzz_server):
    outcomes = fuzz("retrieveModel", operations, checks, fuzz_server.url)
    assert seen(outcomes, "json", model=None) == 0  # schemathesis never guesses a registered name
    assert seen(outcomes, "json") >= 1 and seen(outcomes, "model_not_found", model=None) >= 1


@pytest.mark.parametrize("operation_id", ["listModels", "listRegistrations", "getRoot", "getHealth", "getReadiness"])
def test_listings_and_probes_always_answer_their_schema(operation_id, operations, checks, fuzz_server):
    outcomes = fuzz(operation_id, operations, checks, fuzz_server.url)
    assert outcomes and {got for (_, _, got) in outcomes} == {"json"}, outcomes


@pytest.mark.parametrize("operation_id", TOKENS)
def test_tokenize_and_detokenize_answer_their_schema_or_openai_errors(operation_id, operations, checks, fuzz_server):
    outcomes = fuzz(operation_id, operations, checks, fuzz_server.url)
    assert seen(outcomes, "json", model="demo") + seen(outcomes, "json", model="demo-lenient") >= 1, outcomes


@pytest.mark.parametrize("operation_id", STORED_STATE)
def test_stored_state_operations_answer_their_schema_or_openai_errors(operation_id, operations, checks, fuzz_server):
    outcomes = fuzz(operation_id, operations, checks, fuzz_server.url)
    answered = {got for (_, _, got) in outcomes}
    assert answered <= {"json", "not_found", "unsupported_parameter", "unknown_parameter", *REFUSED}, outcomes
    if operation_id != "createConversationItems":  # its made-up items are mostly refused before any lookup
        assert answered & {"json", "not_found"}, outcomes  # cases got past validation to the store


def test_unimplemented_operations_answer_501_in_the_envelope(operations, checks, fuzz_server, built_spec):
    others = sorted(set(built_spec.operations_in("openai")) - set(IMPLEMENTED))  # /openapi.json's
    for operation_id in sorted(random.Random(20240501).sample(others, UNIMPLEMENTED_SAMPLE)):
        outcomes = fuzz(operation_id, operations, checks, fuzz_server.url, implemented=False)
        answered = {got for (_, _, got) in outcomes}
        assert "not_implemented" in answered and answered <= {"not_implemented", "not_found"}, (operation_id, outcomes)


def test_stateful_listed_models_are_retrievable(checks, fuzz_server):
    """schemathesis's state machine over the link it infers (the document declares none):
    every model ``listModels`` names is retrieved through ``retrieveModel``."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json").include(operation_id=list(STATEFUL))
    outcomes: Counter = Counter()

    class Workflow(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": fuzz_server.url, "timeout": 30}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            operation_id = case.operation.definition.raw["operationId"]
            content_type = ",".join(response.headers.get("content-type", []))
            try:
                outcomes[operation_id, checks.response(
                    operation_id, response.status_code, content_type, response.text, implemented=True)] += 1
            except AssertionError as exc:
                exc.add_note(case.as_curl_command()[:3000])
                raise
            if operation_id == "retrieveModel" and case.path_parameters["model"] in MODELS:
                assert response.json()["id"] == case.path_parameters["model"]

    assert "GET /v1/models -> 200" in Workflow.bundles  # the inferred link: listModels -> retrieveModel
    Workflow.run(settings=settings(
        max_examples=STATEFUL_EXAMPLES, stateful_step_count=4, derandomize=True, database=None, deadline=None,
        phases=[Phase.explicit, Phase.generate]))
    assert outcomes["listModels", "json"] >= 1 and outcomes["retrieveModel", "json"] >= 1, outcomes
