"""The patched document at /openapi.json and /v1/openapi.json, and Swagger UI at /ui."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/openapi.json", "/v1/openapi.json"])
def test_patched_document_is_served(server, path):
    with server.http() as http:
        document = http.get(path).json()
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "OpenAI API (served by localai-runtime)"
    assert "/v1/chat/completions" in document["paths"]
    assert "/healthz" in document["paths"]


def test_swagger_ui_shows_the_patched_document(server):
    with server.http(follow_redirects=True) as http:
        page = http.get("/ui/")
        assert page.status_code == 200
        assert "swagger-ui" in page.text
        assert 'url: "/openapi.json"' in page.text


def test_swagger_ui_is_a_version_that_renders_openapi_31(server):
    """Swagger UI 4 (connexion's swagger-ui extra) refuses `openapi: 3.1.0` ("does not specify a
    valid version field"); the project depends on the 5.x bundle. Checked by hand in headless
    Chromium: the chat operation renders with its x-localai-extensions."""
    import swagger_ui_bundle

    assert "swagger-ui-5." in str(swagger_ui_bundle.swagger_ui_path)
    with server.http() as http:
        served = http.get("/ui/swagger-ui-bundle.js").content
    from pathlib import Path

    assert served == (Path(swagger_ui_bundle.swagger_ui_path) / "swagger-ui-bundle.js").read_bytes()


def test_documents_keep_their_references_and_match(server, built_spec):
    import yaml

    from localai_runtime.http.routing import find_handlers
    from localai_runtime.spec.status import mark_status

    with server.http() as http:
        as_json = http.get("/openapi.json")
        as_yaml = http.get("/openapi.yaml")
        again = http.get("/v1/openapi.json")
    assert as_json.headers["content-type"] == "application/json"
    assert as_yaml.headers["content-type"] == "application/yaml"
    # References as written, not expanded (connexion's resolved copy came to 19 MB).
    assert len(as_json.content) < 4 * 1024 * 1024
    chat = as_json.json()["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateChatCompletionRequest"}
    served = mark_status(built_spec.primary.document, find_handlers(built_spec.operations))  # see below
    assert as_json.json() == served == yaml.load(as_yaml.content, Loader=yaml.CSafeLoader)
    assert again.content == as_json.content


def test_documents_render_once_off_the_event_loop():
    import asyncio
    import threading

    from localai_runtime.http.document_views import DocumentViews

    threads = []

    class Recording(dict):
        def items(self):  # json.dumps walks the document through items()
            threads.append(threading.current_thread())
            return super().items()

    views = DocumentViews(Recording(openapi="3.1.0"))

    async def main():
        first, second = await asyncio.gather(views.render("json"), views.render("json"))
        return first, second, threading.current_thread()

    first, second, loop_thread = asyncio.run(main())
    assert first == second == b'{"openapi": "3.1.0"}'
    assert len(threads) == 1 and threads[0] is not loop_thread


def implementation_status(document: dict) -> dict[str, str]:
    """operationId -> its x-localai-status, for every operation of ``document``."""
    return {operation["operationId"]: operation.get("x-localai-status")
            for item in document["paths"].values() for method, operation in item.items()
            if method in ("get", "put", "post", "delete", "options", "head", "patch", "trace")}


def test_served_document_says_which_operations_are_implemented(server, built_spec):
    """x-localai-status on every operation, computed from the handlers found at start-up; the
    others' summaries (what Swagger UI shows beside the path) and descriptions say so. The
    operationIds, paths and tags clients generate code from stay as built."""
    from localai_runtime.http.routing import find_handlers
    from localai_runtime.spec.status import DESCRIPTION_NOTE, SUMMARY_PREFIX

    with server.http() as http:
        served = http.get("/openapi.json").json()
    openai = built_spec.operations_in("openai")  # Anthropic's document is served apart (test_documents.py)
    implemented = set(find_handlers(openai))
    status = implementation_status(served)
    assert set(status) == set(openai)
    assert {op_id for op_id, value in status.items() if value == "implemented"} == implemented
    assert {op_id for op_id, value in status.items() if value == "not-implemented"} == set(status) - implemented
    assert {"createChatCompletion", "createEmbedding", "listModels", "getHealth"} <= implemented
    assert {"createImage", "createAssistant", "deleteModel"}.isdisjoint(implemented)
    for op_id, operation in openai.items():
        marked = served["paths"][operation.path][operation.method]
        assert marked["operationId"] == op_id and marked.get("tags") == operation.spec.get("tags")
        if op_id in implemented:
            assert marked["summary"] == operation.spec["summary"], op_id
            assert marked.get("description") == operation.spec.get("description"), op_id
        else:
            assert marked["summary"] == SUMMARY_PREFIX + operation.spec["summary"], op_id
            assert marked["description"].startswith(DESCRIPTION_NOTE), op_id
            assert marked["description"].endswith(operation.spec.get("description") or DESCRIPTION_NOTE), op_id
    assert list(served["paths"]) == list(built_spec.primary.document["paths"])
    assert (f"This server implements {len(implemented)} of these {len(openai)} operations"
            in served["info"]["description"])
    tags = {tag["name"]: tag for tag in served["tags"]}
    assert tags["Images"]["x-localai-status"] == "not-implemented"
    assert tags["Images"]["description"].startswith("**Not implemented by this server**")
    assert tags["Health"]["x-localai-status"] == "implemented"
    assert "x-localai-status" not in tags["Chat"]  # some implemented, some not: each operation says which
    # The built document, shared by every server of the session, is left as it was built.
    assert set(implementation_status(built_spec.document).values()) == {None}
    assert not any(op.spec["summary"].startswith(SUMMARY_PREFIX) for op in built_spec.operations.values())


def test_marking_follows_the_handlers_found(testing_spec):
    """The test-only operations of tests/fake_spec are implemented exactly when the server is
    given tests/fake_handlers: the marks come from the handlers, not from a list."""
    from localai_runtime.http.routing import find_handlers
    from localai_runtime.spec.status import mark_status
    from tests.conftest import live_server

    with live_server(testing_spec, handler_packages=("localai_runtime.handlers", "tests.fake_handlers")) as live, live.http() as http:
        with_fakes = implementation_status(http.get("/openapi.json").json())
    assert with_fakes["echoValidated"] == with_fakes["echoItem"] == "implemented"
    without = implementation_status(mark_status(testing_spec.primary.document, find_handlers(testing_spec.operations)))
    assert without["echoValidated"] == without["echoItem"] == "not-implemented"
    assert {op_id: value for op_id, value in with_fakes.items() if not op_id.startswith("echo")} == {
        op_id: value for op_id, value in without.items() if not op_id.startswith("echo")}


def test_marking_copies_what_it_changes_and_can_be_redone(built_spec):
    import json

    from localai_runtime.spec.status import mark_status

    before = json.dumps(built_spec.document)
    marked = mark_status(built_spec.document, {"createChatCompletion", "createImage"})
    assert json.dumps(built_spec.document) == before
    assert marked["components"] is built_spec.document["components"]  # shared, not copied
    assert mark_status(marked, {"createChatCompletion", "createImage"}) == marked
    # Marking again with other handlers gives what marking the built document would.
    assert mark_status(marked, {"createChatCompletion"}) == mark_status(built_spec.document, {"createChatCompletion"})


def test_served_document_is_valid_openapi_31(server):
    """The marked parts (info, tags, every operation's summary, description, operationId, tags and
    x-localai-status) against the OpenAPI 3.1 schema (the one schemathesis ships). The whole
    document takes seconds to check this way; what the marking does not touch is as built."""
    from jsonschema import Draft202012Validator
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    with server.http() as http:
        served = http.get("/openapi.json").json()
    kept = ("operationId", "summary", "description", "tags", "x-localai-status")
    skeleton = {
        "openapi": served["openapi"], "info": served["info"], "tags": served["tags"],
        "paths": {path: {method: {key: operation[key] for key in kept if key in operation}
                         for method, operation in item.items() if isinstance(operation, dict) and "operationId" in operation}
                  for path, item in served["paths"].items()},
    }
    errors = [f"{list(error.absolute_path)}: {error.message[:200]}"
              for error in Draft202012Validator(OPENAPI_31).iter_errors(skeleton)]
    assert not errors, errors[:10]
