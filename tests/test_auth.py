"""API keys from the spec's own security declarations."""

from __future__ import annotations

import logging

import openai
import pytest

from localai_runtime.cli import _settings, build_parser
from tests.conftest import live_server

KEY = "sk-test-key-1"


@pytest.fixture(scope="module")
def secured(built_spec):
    with live_server(built_spec, api_keys=(KEY, "sk-other")) as live:
        yield live


def test_secured_operation_needs_a_key(secured):
    with secured.http() as http:
        missing = http.get("/v1/models")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/models", headers={"Authorization": f"Basic {KEY}"}).status_code == 401
        # with either key the request reaches its handler: the listing of the shipped registrations
        for key in (KEY, "sk-other"):
            listed = http.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
            assert listed.status_code == 200, listed.text
            body = listed.json()
            assert body["object"] == "list"
            assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
                ("demo", "model", "localai-runtime"), ("demo-gpt4all", "model", "localai-runtime")]
            assert all(isinstance(m["created"], int) for m in body["data"])


def test_openai_client_raises_authentication_error(secured):
    with pytest.raises(openai.AuthenticationError) as raised:
        secured.client(api_key="wrong").models.list()
    assert "Incorrect API key" in raised.value.message


def test_health_stays_open(secured):
    with secured.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200


def test_every_secured_operation_answers_401_without_a_key(secured, built_spec):
    from tests.test_routing import concrete

    with secured.http() as http:
        for op in built_spec.operations.values():
            response = http.request(op.method.upper(), concrete(op.path))
            if op.operation_id in ("getRoot", "getHealth", "getReadiness", "getMetrics"):  # open unless --metrics-need-key
                assert response.status_code == 200
            else:
                assert response.status_code == 401, (op.operation_id, response.status_code)


def test_keys_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("LOCALAI_API_KEYS", " a, b ,,")
    args = build_parser().parse_args(["serve", "--api-key", "c"])
    assert _settings(args).api_keys == ("c", "a", "b")


def test_open_server_says_so(built_spec, caplog):
    with caplog.at_level(logging.WARNING), live_server(built_spec):
        pass
    assert "no API keys configured" in caplog.text
