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
