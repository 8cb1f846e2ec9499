"""Handlers called by HandlerMiddleware with the validated body, or by connexion where they must be."""

from __future__ import annotations

import asyncio

import pytest
from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.responses import PlainTextResponse

import localai_runtime.handlers.chat
from localai_runtime.http import routing
from localai_runtime.http.dispatch import VALIDATED_BODY, HandlerMiddleware, plan, plan_calls, to_response
from tests.conftest import live_server
from tests.fake_handlers import testing


def test_every_shipped_handler_is_called_directly(built_spec):
    found = routing.find_handlers(built_spec.operations)
    calls = plan_calls(built_spec.document, built_spec.operations, found)
    assert set(calls) == set(found)
    assert len(found) >= 8


def test_query_parameters_are_left_to_connexion(testing_spec):
    # echoValidated declares query parameters, which connexion converts per schema.
    assert plan(testing_spec.document, testing_spec.operations["echoValidated"], testing.echoValidated) is None
    item = plan(testing_spec.document, testing_spec.operations["echoItem"], testing.echoItem)
    assert item is not None and item.arguments == (("item_id", "path"), ("body", "body"))


def test_an_argument_nobody_supplies_is_left_to_connexion(built_spec):
    async def createChatCompletion(body, user_agent):  # noqa: N802, ANN001, ANN202
        return {}

    assert plan(built_spec.document, built_spec.operations["createChatCompletion"], createChatCompletion) is None


def test_the_handler_gets_the_validated_body_object(built_spec):
    received = []

    async def handler(body):  # noqa: ANN001, ANN202
        received.append(body)
        return {"ok": True}, 202

    call = plan(built_spec.document, built_spec.operations["createChatCompletion"], handler)
    body = {"model": "m", "messages": []}
    sent = []

    async def send(message):  # noqa: ANN001, ANN202
        sent.append(message)

    async def not_called(*_args):  # noqa: ANN002, ANN202
        raise AssertionError("the request went past the middleware")

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [],
             "extensions": {ROUTING_CONTEXT: {"operation_id": "createChatCompletion"}, VALIDATED_BODY: body}}
    middleware = HandlerMiddleware(not_called, calls={"createChatCompletion": call})
    asyncio.run(middleware(scope, None, send))
    assert received[0] is body
    assert sent[0]["status"] == 202
    assert sent[1]["body"] == b'{"ok":true}'


def test_requests_without_a_planned_operation_pass_through():
    passed = []

    async def inner(scope, receive, send):  # noqa: ANN001, ANN202
        passed.append(scope["path"])

    middleware = HandlerMiddleware(inner, calls={})
    asyncio.run(middleware({"type": "http", "path": "/v1/openapi.json"}, None, None))
    asyncio.run(middleware({"type": "lifespan", "path": ""}, None, None))
    assert passed == ["/v1/openapi.json", ""]


@pytest.mark.parametrize(("result", "status", "body"), [
    ({"a": 1}, 200, b'{"a":1}'),
    (([1, 2], 201), 201, b"[1,2]"),
    (PlainTextResponse("x", status_code=418), 418, b"x"),
])
def test_return_values_follow_connexion(result, status, body):
    response = to_response(result)
    assert (response.status_code, response.body) == (status, body)


def test_a_malformed_tuple_is_an_error():
    with pytest.raises(TypeError, match="tuple of 4 items"):
        to_response(({}, 200, {}, "extra"))


def test_path_parameter_status_and_headers_over_http(testing_spec):
    with live_server(testing_spec, handler_packages=("localai_runtime.handlers", "tests.fake_handlers")) as live, live.http() as http:
        response = http.post("/v1/testing/items/7", json={"k": [1, "two"]})
        assert response.status_code == 201
        assert response.headers["x-echo"] == "item"
        assert response.json() == {"item_id": 7, "received": {"k": [1, "two"]}}
        # The body validator still runs first: a body that is not an object is refused.
        refused = http.post("/v1/testing/items/7", json=[1])
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "invalid_request_error"
        # The starlette convertor refuses a non-integer id before any handler.
        assert http.post("/v1/testing/items/x", json={}).status_code == 404


def test_shipped_handlers_keep_connexion_signatures():
    # They stay callable through connexion's decorator too (plan() falls back to it).
    assert list(localai_runtime.handlers.chat.createChatCompletion.__annotations__) == ["body", "return"]
