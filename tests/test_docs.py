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
    assert as_json.json() == built_spec.document == yaml.load(as_yaml.content, Loader=yaml.CSafeLoader)
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
