"""Grammar inputs that once exhausted memory or killed the server (a tool parameter or a JSON
schema with a huge ``maxLength``/``maxItems``, a GBNF grammar nested or repeated tens of
thousands of times) are a 400 naming the field and the limit, on a real server with the demo
GGUF, which stays healthy after each; grammars within the limits work as before; a
registration sets its own limits, checked at start-up. Hypothesis fuzzes the checks with
random schemas and GBNF texts of large bounds and deep nesting: each is refused naming its
field or built within the time budget, and ``/healthz`` answers after each.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import textwrap
import time

import httpx
import openai
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from localai_runtime.backends import BackendRegistry
from localai_runtime.errors import InvalidRequestError, SpecError
from localai_runtime.serving.registrations import load_registrations
from localai_runtime.settings import resource_dir
from localai_runtime.spec.request_schemas import RequestSchemas
from localai_runtime.tools.gbnf_limits import check_gbnf
from localai_runtime.tools.grammar_limits import GrammarLimits, check_schema
from tests.conftest import hold_instances, live_server

TIGHT = """
    registration: {model: tight, operations: [createChatCompletion, createCompletion, createResponse]}
    local_settings:
      backend: llama-cpp
      model_file: builtin:demo
      threads: 2
      context_size: 2048
      parallel: 1
      grammar_limits: {max_repetition: 10, max_depth: 20, max_rules: 200, max_length: 2000, max_step_seconds: 0.2}
    """
MESSAGES = [{"role": "user", "content": "hi"}]
BUDGET_S = 20.0
"""The most one case may take, the request and the grammar's preparation included (2 shared cores)."""


@pytest.fixture(scope="module")
def live(built_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("configs")
    shutil.copy(resource_dir("configs") / "demo-llama-cpp.yaml", directory)
    (directory / "tight.yaml").write_text(textwrap.dedent(TIGHT))
    with live_server(built_spec, configs_dir=directory) as server:
        yield server


def healthy(live) -> bool:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        return http.get("/healthz").status_code == 200


def _string(limit: int) -> dict:
    return {"type": "object", "properties": {"note": {"type": "string", "maxLength": limit}}, "required": ["note"]}


def _chat_tool(limit: int) -> dict:
    return {"tools": [{"type": "function", "function": {"name": "f", "parameters": _string(limit)}}],
            "tool_choice": "required"}


def _chat_format(schema: dict) -> dict:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}


CHAT_CASES = [
    *[(_chat_tool(n), "tools[0].function.parameters.properties.note.maxLength") for n in (20000, 30000, 20_000_000)],
    (_chat_format(_string(20000)), "response_format.json_schema.schema.properties.note.maxLength"),
    (_chat_format({"type": "array", "items": {"type": "integer"}, "maxItems": 30000}),
     "response_format.json_schema.schema.maxItems"),
    ({"extra_body": {"x-localai-extensions": {"grammar": "root ::= " + "(" * 30000 + '"a"' + ")" * 30000}}},
     "x-localai-extensions.grammar"),
    ({"extra_body": {"x-localai-extensions": {"grammar": 'root ::= "a"{0,30000}'}}}, "x-localai-extensions.grammar"),
]


@pytest.mark.parametrize(("fields", "param"), CHAT_CASES)
def test_a_grammar_input_over_the_limits_is_400_naming_field_and_limit(live, fields, param):
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError) as raised:
        live.client().chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2, **fields)
    assert time.monotonic() - started < 5
    error = raised.value.body
    assert error["param"] == param
    assert "exceeds this model's limit of" in error["message"] and "grammar_limits." in error["message"]
    assert healthy(live)


@pytest.mark.parametrize(("fields", "param"), [
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": _string(20000)}}},
     "text.format.schema.properties.note.maxLength"),
    ({"tools": [{"type": "function", "name": "f", "strict": False, "parameters": _string(30000)}],
      "tool_choice": "required"}, "tools[0].parameters.properties.note.maxLength"),
])
def test_responses_grammar_inputs_over_the_limits_are_400_naming_their_field(live, fields, param):
    with pytest.raises(openai.BadRequestError) as raised:
        live.client().responses.create(model="demo", input="hi", max_output_tokens=16, store=False, **fields)
    assert raised.value.body["param"] == param
    assert "limit of 1000 (grammar_limits.max_repetition)" in raised.value.body["message"]
    assert healthy(live)


def test_grammars_at_the_limits_work_as_before(live):
    client = live.client()
    answer = client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=8, temperature=0,
                                            extra_body={"x-localai-extensions": {"grammar": 'root ::= "a"{0,1000}'}})
    assert set(answer.choices[0].message.content) <= {"a"}
    called = client.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=1500, temperature=0,
                                            **_chat_tool(1000))
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "f" and len(json.loads(call.function.arguments)["note"]) <= 1000


def test_a_registration_sets_its_own_limits(live):
    client = live.client()
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="tight", messages=MESSAGES, max_tokens=2, **_chat_format(_string(11)))
    assert raised.value.body["param"] == "response_format.json_schema.schema.properties.note.maxLength"
    assert "maxLength 11 exceeds this model's limit of 10" in raised.value.body["message"]
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="tight", messages=MESSAGES, max_tokens=2,
                                       extra_body={"x-localai-extensions": {"grammar": "root ::= " + "r0\n" + "".join(
                                           f'r{i} ::= r{i + 1} "x"\n' for i in range(30)) + 'r30 ::= "z"\n'}})
    assert raised.value.body["param"] == "x-localai-extensions.grammar"
    assert "limit of 20 (grammar_limits.max_depth)" in raised.value.body["message"]
    fine = client.chat.completions.create(model="tight", messages=MESSAGES, max_tokens=30, temperature=0,
                                          **_chat_format(_string(10)))
    assert fine.choices[0].message.content.startswith("{")


OVER_LIMIT_GBNF = 'root ::= "a"{0,30000}'
BUSY_CASES = [
    ("createChatCompletion", "/v1/chat/completions", {"messages": MESSAGES, **_chat_tool(20000)},
     "tools[0].function.parameters.properties.note.maxLength"),
    ("createChatCompletion", "/v1/chat/completions", {"messages": MESSAGES, **_chat_format(_string(20000))},
     "response_format.json_schema.schema.properties.note.maxLength"),
    ("createChatCompletion", "/v1/chat/completions",
     {"messages": MESSAGES, "x-localai-extensions": {"grammar": OVER_LIMIT_GBNF}}, "x-localai-extensions.grammar"),
    ("createCompletion", "/v1/completions", {"prompt": "hi", "x-localai-extensions": {"grammar": OVER_LIMIT_GBNF}},
     "x-localai-extensions.grammar"),
    ("createResponse", "/v1/responses",
     {"input": "hi", "store": False, "text": {"format": {"type": "json_schema", "name": "x", "schema": _string(20000)}}},
     "text.format.schema.properties.note.maxLength"),
    ("createResponse", "/v1/responses",
     {"input": "hi", "store": False, "tools": [{"type": "function", "name": "f", "parameters": _string(30000)}]},
     "tools[0].parameters.properties.note.maxLength"),
    ("createResponse", "/v1/responses",
     {"input": "hi", "store": False, "x-localai-extensions": {"grammar": OVER_LIMIT_GBNF}},
     "x-localai-extensions.grammar"),
    ("createResponse", "/v1/responses",  # a custom tool's grammar, as translated to GBNF
     {"input": "hi", "store": False, "tool_choice": "required", "tools": [
         {"type": "custom", "name": "c", "format": {"type": "grammar", "syntax": "regex", "definition": "a{0,1500}"}}]},
     "tools[0].format.definition"),
]


@pytest.mark.parametrize(("operation", "path", "fields", "param"), BUSY_CASES)
def test_an_over_limit_grammar_is_refused_before_it_waits_for_a_busy_instance(live, operation, path, fields, param):
    """Measured when the request is prepared: with every instance of the model held (as a long
    generation holds it), the 400 comes back while they are still held, and nothing queued."""
    def post() -> httpx.Response:
        with httpx.Client(base_url=live.url, timeout=120) as http:
            return http.post(path, json={"model": "demo", "max_tokens" if operation != "createResponse"
                                         else "max_output_tokens": 16, **fields})

    with concurrent.futures.ThreadPoolExecutor(1) as threads, hold_instances(live, operation, "demo") as pool:
        assert pool.busy == pool.size
        sent = threads.submit(post)
        done, _ = concurrent.futures.wait([sent], timeout=60)
        assert done, f"the request waited for an instance ({pool.waiting} waiting)"
        assert pool.waiting == 0 and pool.busy == pool.size
    answer = sent.result()
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["code"] == "invalid_value"
    assert "exceeds this model's limit of" in error["message"] and "grammar_limits." in error["message"]


def test_a_grammar_whose_work_doubles_with_each_token_is_ended_at_the_step_limit(live):
    with httpx.Client(base_url=live.url, timeout=60) as http:
        strs = http.post("/tokenize", json={"model": "demo", "prompt": "xa", "add_special_tokens": False,
                                            "return_token_strs": True}).json()
        assert strs["token_strs"][-1] == "a"
        started = time.monotonic()
        # After k tokens "a", llama.cpp holds 2^k stacks (each "a" may close with "b" or "c").
        answer = http.post("/v1/chat/completions", json={
            "model": "tight", "messages": MESSAGES, "max_tokens": 40, "temperature": 0,
            "logit_bias": {str(strs["tokens"][-1]): 100},
            "x-localai-extensions": {"grammar": 'root ::= e\ne ::= "a" e "b" | "a" e "c" | "d"'}})
        took = time.monotonic() - started
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "x-localai-extensions.grammar"
    assert "(grammar_limits.max_step_seconds)" in answer.json()["error"]["message"]
    assert took < 30 and healthy(live)
    served = live.client().chat.completions.create(model="tight", messages=MESSAGES, max_tokens=2)
    assert served.choices[0].finish_reason == "length"  # the engine is free again


AMBIGUOUS = 'root ::= e\ne ::= "a" e "b" | "a" e "c"'
"""Only runs of "a" fit, and after k of them llama.cpp holds 2^k stacks: a step soon takes too long."""
COSTLY_CASES = [
    ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 60}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 60}),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 60}),
]


def _costly(error: dict) -> None:
    assert error["code"] == "invalid_value", error
    assert "more than the 0.2 s this model allows (grammar_limits.max_step_seconds)" in error["message"], error


@pytest.mark.parametrize(("path", "fields"), COSTLY_CASES)
def test_a_grammar_too_costly_to_follow_is_a_400_naming_it_in_every_api(live, path, fields):
    """GrammarTooCostly, raised on the engine thread, ends its own request only, as a 400 (or, once
    a stream began, its error event) naming the grammar's field and the limit."""
    body = {"model": "tight", "temperature": 0, "x-localai-extensions": {"grammar": AMBIGUOUS}, **fields}
    with httpx.Client(base_url=live.url, timeout=120) as http:
        whole = http.post(path, json=body)
        assert whole.status_code == 400, whole.text
        assert whole.json()["error"]["param"] == "x-localai-extensions.grammar"
        _costly(whole.json()["error"])
        streamed = http.post(path, json={**body, "stream": True})
    assert streamed.status_code == 200, streamed.text
    events = [json.loads(line[len("data: "):]) for line in streamed.text.splitlines()
              if line.startswith("data: {")]
    if path == "/v1/responses":
        error, failed = events[-2], events[-1]
        assert (error["type"], failed["type"]) == ("error", "response.failed")
        assert failed["response"]["status"] == "failed"
        _costly(failed["response"]["error"])
        stored = live.client().responses.retrieve(failed["response"]["id"])
        assert stored.status == "failed" and stored.error.code == "invalid_value"
    else:
        error = events[-1]["error"]
        assert streamed.text.rstrip().endswith("data: [DONE]")
    assert error["param"] == "x-localai-extensions.grammar"
    _costly(error)
    assert live.client().completions.create(model="tight", prompt="hi", max_tokens=2).choices[0].text is not None


@pytest.mark.parametrize(("limits", "message"), [
    ("{max_repetition: 5000}", r"Invalid value for 'local_settings\.grammar_limits\.max_repetition': 5000 is "
                               r"greater than the maximum of 2000"),
    ("{max_depth: 0}", r"Invalid value for 'local_settings\.grammar_limits\.max_depth': 0 is less than the minimum of 1"),
    ("{max_rule: 10}", r"Unknown parameter: 'local_settings\.grammar_limits\.max_rule'"),
])
def test_grammar_limits_are_checked_at_start_up(built_spec, tmp_path, limits, message):
    (tmp_path / "bad.yaml").write_text(textwrap.dedent(f"""
        registration: {{model: bad, operations: [createChatCompletion]}}
        local_settings: {{backend: llama-cpp, model_file: builtin:demo, grammar_limits: {limits}}}
        """))
    with pytest.raises(SpecError, match=r"bad\.yaml#0 \(model bad\): " + message):
        load_registrations(tmp_path, RequestSchemas(built_spec), BackendRegistry.from_entry_points())


def _chain(n: int, rule: str) -> str:
    return "root ::= r0\n" + "".join(rule.format(i=i, j=i + 1) + "\n" for i in range(n)) + f'r{n} ::= "z"\n'


@pytest.mark.parametrize(("grammar", "refused"), [
    ('root ::= "a"{0,#a comment\n 30000}', "the repetition {0,30000} exceeds this model's limit of 1000"),
    ('root ::= "a"{1001}', "the repetition {1001} exceeds"),
    ('root ::= "a"{0,1000} "b"{1000} "c"{5,}', None),
    ("root ::= " + "(" * 2001 + '"a"' + ")" * 2001, "groups nested 2001 deep exceeds this model's limit of 2000"),
    (_chain(3000, 'r{i} ::= r{j} "x"'), "a chain of 2001 rules each beginning with the next exceeds"),
    (_chain(3000, 'r{i} ::= "a"? r{j} "x"'), "a chain of 2001 rules"),  # an optional prefix begins nothing
    (_chain(3000, 'r{i} ::= ("a")* r{j} "x"'), "a chain of 2001 rules"),
    (_chain(1998, 'r{i} ::= r{j} "x"'), None),  # root, r0 ... r1998: 2000 rules
    (_chain(4000, 'r{i} ::= "x" r{j} | "y"'), None),  # right recursion: no chain
    (_chain(40, 'r{i} ::= r{j} "x" | r{j} "y"'), "more than 10000 ways to begin rule"),  # 2^40 stacks
    ("root ::= " + " | ".join(f'"w{i}"' for i in range(10001)), "more than 10000 rules and alternatives"),
    ('root ::= "' + "a" * 1001 + '"{1000}', "a grammar expanding to 1001000 elements exceeds"),
    ("root ::= " + '"a" ' * 300_000, "a grammar of 1200009 characters exceeds this model's limit of 1000000"),
])
def test_gbnf_is_measured_as_llama_cpp_would_build_it(grammar, refused):
    if refused is None:
        check_gbnf(grammar, "x-localai-extensions.grammar", GrammarLimits())
        return
    with pytest.raises(InvalidRequestError, match=re.escape(refused)) as raised:
        check_gbnf(grammar, "x-localai-extensions.grammar", GrammarLimits())
    assert raised.value.param == "x-localai-extensions.grammar"


@pytest.mark.parametrize("grammar", [
    'root ::= "a"{1,' + " " * 200_000,  # an unclosed count: read once, not once per space
    "root ::= " + "[" * 200_000,  # unclosed classes
    'root ::= "a"{' + "9" * 5000 + "}",  # a count longer than int() takes
])
def test_hostile_gbnf_is_measured_in_one_pass(grammar):
    try:
        check_gbnf(grammar, "g", GrammarLimits())
    except InvalidRequestError as refused:
        assert refused.param == "g" and "exceeds" in refused.message


@pytest.mark.parametrize("pattern", ["a{" + " " * 200_000, "a{" + "9" * 5000 + "}"])
def test_hostile_patterns_are_measured_in_one_pass(pattern):
    try:
        check_schema({"type": "string", "pattern": pattern}, "s", GrammarLimits())
    except InvalidRequestError as refused:
        assert refused.param == "s.pattern" and "exceeds" in refused.message


@pytest.mark.parametrize(("schema", "param", "refused"), [
    ({"type": "string", "pattern": "^(ab){0,1001}$"}, "s.pattern", "the quantifier {0,1001}"),
    ({"type": "object", "properties": {"enum": {"type": "string", "maxLength": 2000}}}, "s.properties.enum.maxLength",
     "maxLength 2000"),  # a property may be named like a keyword
    ({"type": "string", "enum": [{"maxLength": 5000}]}, None, None),  # data, not a schema
    ({"type": "array", "items": [{"type": "string", "minLength": 1001}]}, "s.items[0].minLength", "minLength 1001"),
    ({"type": "object", "properties": {k: {"type": "string", "maxLength": 1000} for k in "abcdefghijk"}}, "s",
     "the schema's bounds, 11000 repetitions in all, exceeds this model's limit of 10000"),
])
def test_schemas_are_measured_before_they_are_converted(schema, param, refused):
    if refused is None:
        check_schema(schema, "s", GrammarLimits())
        return
    with pytest.raises(InvalidRequestError, match=re.escape(refused)) as raised:
        check_schema(schema, "s", GrammarLimits())
    assert raised.value.param == param


# -- fuzzing -------------------------------------------------------------------------------------

BIG = st.sampled_from([0, 1, 2, 10, 999, 1000, 1001, 2000, 30000, 20_000_000])
DEEP = st.sampled_from([1, 2, 50, 1999, 2000, 2001, 30000])
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.function_scoped_fixture])
_leaf = st.one_of(
    st.builds(lambda n, m: {"type": "string", "maxLength": n, "minLength": min(m, n)}, BIG, BIG),
    st.builds(lambda n: {"type": "string", "pattern": f"a{{0,{n}}}b"}, BIG),
    st.just({"type": "integer"}), st.just({"type": "boolean"}),
)
SCHEMAS = st.recursive(_leaf, lambda inner: st.one_of(
    st.builds(lambda item, n, m: {"type": "array", "items": item, "maxItems": n, "minItems": min(m, n)},
              inner, BIG, BIG),
    st.builds(lambda props: {"type": "object", "properties": props, "required": sorted(props)[:1]},
              st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, min_size=1, max_size=3)),
), max_leaves=6)
_term = st.sampled_from(['"a"', "[a-z]", '"xy"', "."])
EXPRESSIONS = st.recursive(_term, lambda inner: st.one_of(
    st.builds(lambda x, n: "(" * n + x + ")" * n, inner, DEEP),
    st.builds(lambda x, m, n: f"{x}{{{min(m, n)},{n}}}", inner, BIG, BIG),
    st.builds(lambda x, op: f"({x}){op}", inner, st.sampled_from(["*", "+", "?"])),
    st.builds(lambda x, y: f"{x} {y}", inner, inner),
    st.builds(lambda x, y: f"({x} | {y})", inner, inner),
), max_leaves=5)
GRAMMARS = st.one_of(
    st.builds(lambda x: f"root ::= {x}", EXPRESSIONS),
    st.builds(lambda n, x: "root ::= r0\n" + "".join(f"r{i} ::= r{i + 1} {x}\n" for i in range(n)) + f"r{n} ::= {x}",
              st.sampled_from([1, 100, 1999, 2000, 2001, 12000]), _term),
)


def _within_budget_or_refused(live, body: dict, field: str) -> None:
    started = time.monotonic()
    with httpx.Client(base_url=live.url, timeout=120) as http:
        answer = http.post("/v1/chat/completions", json={"model": "demo", "messages": MESSAGES, "max_tokens": 1,
                                                         "temperature": 0, **body})
    assert time.monotonic() - started < BUDGET_S
    if answer.status_code != 200:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"].startswith(field), answer.text
    assert healthy(live)


@FUZZ
@given(schema=SCHEMAS)
def test_fuzz_random_schemas_are_refused_naming_the_field_or_built_within_budget(live, schema):
    _within_budget_or_refused(live, _chat_format(schema), "response_format")


@FUZZ
@given(grammar=GRAMMARS)
def test_fuzz_random_gbnf_is_refused_naming_the_field_or_built_within_budget(live, grammar):
    _within_budget_or_refused(live, {"x-localai-extensions": {"grammar": grammar}}, "x-localai-extensions.grammar")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(grammar=GRAMMARS, schema=SCHEMAS)
def test_fuzz_the_checks_alone_answer_quickly_with_a_400_or_nothing(grammar, schema):
    limits = GrammarLimits()
    for check, value in ((check_gbnf, grammar), (check_schema, schema)):
        started = time.monotonic()
        try:
            check(value, "field", limits)  # type: ignore[operator]
        except InvalidRequestError as error:
            assert error.param is not None and error.param.startswith("field")
            assert "grammar_limits." in str(error)
        assert time.monotonic() - started < 1
