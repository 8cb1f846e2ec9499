"""One error envelope for every failure, understood by the official openai client.

A test-only operation (``tests/fake_spec/testing.yaml``, handled by ``tests/fake_handlers``)
exercises request validation end to end over HTTP.
"""

from __future__ import annotations

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


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": []}, "model"),
    ({"model": "m", "n": 0}, "n"),
    ({"model": "m", "n": "2"}, "n"),
    ({"model": "m", "user": 3}, "user"),
    ({"model": "m", "object": "dict"}, "object"),
    ({"model": "m", "messages": [{"role": "user"}, {"role": "robot"}]}, "messages[1].role"),
])
def test_invalid_body_is_400_naming_the_field(echo_server, body, param):
    with pytest.raises(openai.BadRequestError) as raised:
        echo_server.client().post("/testing/echo", body=body, cast_to=object)
    error = raised.value.body
    assert raised.value.status_code == 400
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in raised.value.message


@pytest.mark.parametrize(("query", "param"), [("limit=0", "limit"), ("limit=abc", "limit"), ("mode=c", "mode")])
def test_invalid_query_parameter_is_400_naming_it(echo_server, query, param):
    with echo_server.http() as http:
        assert_envelope(http.post(f"{ECHO}?{query}", json={"model": "m"}), 400, type_="invalid_request_error", param=param)


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
        error = assert_envelope(response, 400, type_="invalid_request_error")
    assert "JSON" in error["message"] or "utf-8" in error["message"]


def test_missing_body_is_400(echo_server):
    with echo_server.http() as http:
        assert_envelope(http.post(ECHO, headers={"content-type": "application/json"}), 400, type_="invalid_request_error")


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


def test_internal_error_is_500_without_traceback(monkeypatch, built_spec):
    async def broken():
        raise RuntimeError("secret internals /home/somebody/file.py")

    monkeypatch.setattr(localai_runtime.handlers.health, "getHealth", broken)
    with live_server(built_spec) as live, live.http() as http:
        error = assert_envelope(http.get("/healthz"), 500, type_="api_error")
        assert "secret" not in error["message"] and "Traceback" not in error["message"]
        assert http.get("/readyz").status_code == 200  # still serving
