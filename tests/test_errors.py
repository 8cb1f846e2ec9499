"""One error envelope for every failure, understood by the official openai client.

A test-only operation (``tests/fake_spec/testing.yaml``, handled by ``tests/fake_handlers``)
exercises request validation end to end over HTTP.
"""

from __future__ import annotations

import logging

import httpx
import openai
import pytest

import localai_runtime.handlers.health
from tests.conftest import live_server

ECHO = "/v1/testing/echo"


def assert_envelope(response: httpx.Response, status: int, *, type_: str, code=None, param=None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (type_, param, code)
    assert error["message"]
    return error


@pytest.fixture(scope="module")
def echo_server(testing_spec):
    with live_server(testing_spec, handler_packages=("localai_runtime.handlers", "tests.fake_handlers"), max_body_bytes=4096) as live:
        yield live


def test_valid_body_reaches_the_handler(echo_server):
    body = {"model": "m", "n": None, "user": None, "object": "list", "messages": [{"role": "user"}]}
    result = echo_server.client().post("/testing/echo", body=body, cast_to=object)
    assert result == {"received": body}


@pytest.mark.parametrize(("body", "param", "code"), [
    ({"messages": []}, "model", "missing_required_parameter"),
    ({"model": "m", "n": 0}, "n", "integer_below_min_value"),
    ({"model": "m", "n": "2"}, "n", "invalid_type"),
    ({"model": "m", "user": 3}, "user", "invalid_type"),
    ({"model": "m", "object": "dict"}, "object", "invalid_value"),
    ({"model": "m", "messages": [{"role": "user"}, {"role": "robot"}]}, "messages[1].role", "invalid_value"),
])
def test_invalid_body_is_400_naming_the_field(echo_server, body, param, code):
    with pytest.raises(openai.BadRequestError) as raised:
        echo_server.client().post("/testing/echo", body=body, cast_to=object)
    error = raised.value.body
    assert raised.value.status_code == 400
    assert (error["param"], error["code"]) == (param, code)
    assert error["type"] == "invalid_request_error"
    assert param in raised.value.message


FUNCTION_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}


@pytest.mark.parametrize(("send", "param", "reason", "code"), [
    pytest.param(lambda c: c.responses.create(model="demo", input="hi", tools=[
        {"type": "function", "parameters": FUNCTION_PARAMETERS, "strict": True}]),
        "tools[0].name", "Missing required parameter: 'tools[0].name'.", "missing_required_parameter",
        id="responses-function-tool-without-name"),
    pytest.param(lambda c: c.responses.create(model="demo", input="hi", tools=[
        {"type": "function", "name": "f", "parameters": FUNCTION_PARAMETERS, "strict": "yes"}]),
        "tools[0].strict", "expected a boolean or null, but got a string", "invalid_type",
        id="responses-function-tool-strict-not-boolean"),
    pytest.param(lambda c: c.responses.create(model="demo", input="hi", tools=[{"type": "bogus"}]),
        "tools[0].type", "'bogus'. Supported values are: 'function', 'file_search'", "invalid_value",
        id="responses-unknown-tool-type"),
    pytest.param(lambda c: c.responses.create(model="demo", input=[{"role": "robot", "content": "hi"}]),
        "input[0].role", "'robot'. Supported values are: 'user', 'assistant', 'system', 'developer'.",
        "invalid_value", id="responses-unknown-role"),
    pytest.param(lambda c: c.responses.create(model="demo", input=[
        {"role": "user", "content": [{"type": "input_text", "text": 3}]}]),
        "input[0].content[0].text", "expected a string, but got an integer", "invalid_type",
        id="responses-text-part-not-a-string"),
    pytest.param(lambda c: c.chat.completions.create(model="demo", messages=[
        {"role": "user", "content": [{"type": "text"}]}]),
        "messages[0].content[0].text", "Missing required parameter: 'messages[0].content[0].text'.",
        "missing_required_parameter", id="chat-text-part-without-text"),
    pytest.param(lambda c: c.chat.completions.create(model="demo", messages=[{"role": "tool", "content": "4"}]),
        "messages[0].tool_call_id", "Missing required parameter", "missing_required_parameter",
        id="chat-tool-message-without-call-id"),
])
def test_a_failure_inside_a_choice_names_the_deepest_field(server, send, param, reason, code):
    """OpenAI's document makes a tool one of many tool types and a message one of six roles; the
    error names the field of the type the request chose, not the whole object."""
    with pytest.raises(openai.BadRequestError) as raised:
        send(server.client())
    error = raised.value.body
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert reason in error["message"]
    assert "not valid under any" not in error["message"] and not error["message"].endswith("...")


@pytest.mark.parametrize(("query", "param", "code"), [
    ("limit=0", "limit", "integer_below_min_value"),
    ("limit=abc", "limit", "invalid_type"),
    ("mode=c", "mode", "invalid_value"),
])
def test_invalid_query_parameter_is_400_naming_it(echo_server, query, param, code):
    with echo_server.http() as http:
        assert_envelope(http.post(f"{ECHO}?{query}", json={"model": "m"}), 400, type_="invalid_request_error",
                        param=param, code=code)


def test_unknown_query_parameter_is_400_naming_it(server):
    with server.http() as http:
        error = assert_envelope(http.get("/v1/models?limit=5&after=x"), 400, type_="invalid_request_error",
                                code="unknown_parameter", param="after")
    assert "after, limit" in error["message"]


def test_valid_query_parameters(echo_server):
    with echo_server.http() as http:
        assert http.post(f"{ECHO}?limit=3&mode=a", json={"model": "m"}).status_code == 200


@pytest.mark.parametrize("content", [b'{"model": ', b"not json", b'{"model": "\xff\xfe"}'])
def test_malformed_json_or_utf8_is_400(echo_server, content):
    with echo_server.http() as http:
        response = http.post(ECHO, content=content, headers={"content-type": "application/json"})
        error = assert_envelope(response, 400, type_="invalid_request_error", code="invalid_json")
    assert "JSON" in error["message"] or "utf-8" in error["message"]


def test_missing_body_is_400(echo_server):
    with echo_server.http() as http:
        assert_envelope(http.post(ECHO, headers={"content-type": "application/json"}), 400,
                        type_="invalid_request_error", code="missing_body")


def test_wrong_content_type_is_415(echo_server):
    with echo_server.http() as http:
        response = http.post(ECHO, content=b"model=m", headers={"content-type": "text/plain"})
        error = assert_envelope(response, 415, type_="invalid_request_error", code="unsupported_media_type")
    assert "text/plain" in error["message"]


def test_body_over_the_limit_is_413_even_without_content_length(echo_server):
    big = b'{"model": "' + b"x" * 5000 + b'"}'
    with echo_server.http() as http:
        assert_envelope(http.post(ECHO, content=big, headers={"content-type": "application/json"}),
                        413, type_="invalid_request_error", code="request_too_large")

        def chunks():
            yield big[:3000]
            yield big[3000:]

        chunked = http.post(ECHO, content=chunks(), headers={"content-type": "application/json"})
        assert_envelope(chunked, 413, type_="invalid_request_error", code="request_too_large")
        assert http.post(ECHO, json={"model": "m"}).status_code == 200  # still serving


def test_unknown_route_is_404_and_openai_raises_not_found(server):
    with server.http() as http:
        error = assert_envelope(http.get("/v1/no/such/thing"), 404, type_="invalid_request_error", code="not_found")
    assert "/v1/no/such/thing" in error["message"]
    with pytest.raises(openai.NotFoundError):
        server.client().get("/no/such/thing", cast_to=object)


def test_wrong_method_is_405(server):
    with server.http() as http:
        error = assert_envelope(http.delete("/healthz"), 405, type_="invalid_request_error", code="method_not_allowed")
    assert "DELETE" in error["message"]


def test_unimplemented_operation_makes_openai_raise_with_the_message(server):
    with pytest.raises(openai.APIStatusError) as raised:
        server.client().images.generate(prompt="a cat", model="dall-e-3")
    assert raised.value.status_code == 501
    assert "createImage (POST /v1/images/generations) is not implemented by this server" in raised.value.message
    assert raised.value.code == "not_implemented"


def test_internal_error_is_500_without_traceback(monkeypatch, built_spec, caplog):
    async def broken():
        raise RuntimeError("secret internals /home/somebody/file.py")

    monkeypatch.setattr(localai_runtime.handlers.health, "getHealth", broken)
    with caplog.at_level(logging.INFO), live_server(built_spec) as live, live.http() as http:
        error = assert_envelope(http.get("/healthz"), 500, type_="api_error")
        assert "secret" not in error["message"] and "Traceback" not in error["message"]
        assert http.get("/readyz").status_code == 200  # still serving
    # One line at ERROR, with the traceback; the traceback logged once only.
    [line] = error_lines(caplog, "getHealth")
    assert line.levelno == logging.ERROR and line.getMessage().startswith("getHealth -> 500 param=None code=None:")
    assert isinstance(line.exc_info[1], RuntimeError)
    assert [record for record in caplog.records if record.exc_info] == [line]


def error_lines(caplog, where: str) -> list[logging.LogRecord]:
    """The error lines (localai_runtime.errors.log_error) logged for ``where``."""
    return [record for record in caplog.records
            if record.name == "localai_runtime.errors" and record.getMessage().startswith(f"{where} -> ")]


def test_every_refusal_is_logged_at_info_with_its_operation_param_and_code(server, caplog):
    with caplog.at_level(logging.INFO, logger="localai_runtime.errors"):
        with pytest.raises(openai.BadRequestError):
            server.client().responses.create(model="demo", input="hi", tools=[
                {"type": "function", "parameters": FUNCTION_PARAMETERS, "strict": True}])
        with pytest.raises(openai.NotFoundError):
            server.client().models.retrieve("no-such-model")
        with server.http() as http:
            assert http.get("/v1/no/such/thing").status_code == 404
    [refused] = error_lines(caplog, "createResponse")
    assert refused.levelno == logging.INFO
    assert refused.getMessage() == ("createResponse -> 400 param=tools[0].name code=missing_required_parameter: "
                                    "Missing required parameter: 'tools[0].name'.")
    [unknown] = error_lines(caplog, "retrieveModel")
    assert unknown.levelno == logging.INFO and "-> 404 param=model code=model_not_found:" in unknown.getMessage()
    [unrouted] = error_lines(caplog, "GET /v1/no/such/thing")  # no operation matched: the path
    assert unrouted.levelno == logging.INFO and "-> 404 param=None code=not_found:" in unrouted.getMessage()
