"""Every operation of the patched documents is routed: its handler, or a 501 in its document's
envelope (OpenAI's, Anthropic's)."""

from __future__ import annotations

import re

from localai_runtime.http.middleware import secured_operations
from localai_runtime.http.routing import find_handlers, module_for_tag


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_test_1", path)


def test_every_operation_answers_its_handler_or_501(server, built_spec):
    handlers = find_handlers(built_spec.operations)
    assert {"getHealth", "getReadiness"} <= set(handlers)
    seen = 0
    with server.http() as http:
        for op in built_spec.operations.values():
            response = http.request(op.method.upper(), concrete(op.path))
            seen += 1
            if op.operation_id in handlers:
                assert response.status_code < 500, (op.operation_id, response.text)
                continue
            assert response.status_code == 501, (op.operation_id, op.method, op.path, response.status_code, response.text)
            assert response.headers["content-type"] == "application/json"
            message = f"{op.operation_id} ({op.method.upper()} {op.path}) is not implemented by this server"
            if built_spec.owners.get(op.operation_id) == "anthropic":
                body = response.json()
                assert body["type"] == "error" and body["request_id"].startswith("req_")
                assert body["error"] == {"type": "api_error", "message": message}
                continue
            assert response.json() == {"error": {
                "message": message,
                "type": "not_implemented_error",
                "param": None,
                "code": "not_implemented",
            }}
    assert seen == len(built_spec.operations) == 279 + 104


def test_tag_to_module_name():
    assert module_for_tag("Chat") == "chat"
    assert module_for_tag("Vector stores") == "vector_stores"
    assert module_for_tag(None) == "default"


def test_health_is_open_and_the_rest_is_secured(built_spec):
    secured = secured_operations(built_spec.document, built_spec.operations)
    assert "getHealth" not in secured and "getReadiness" not in secured and "getMetrics" not in secured
    assert "createChatCompletion" in secured and "tokenize" in secured and "detokenize" in secured
    assert "listRegistrations" in secured and "beta_messages_post" in secured and "getRoot" not in secured
    assert len(secured) == 275 + 104
