"""Patch files: RFC 6902 JSON Patch and OpenAPI Overlay 1.0, with errors that name the culprit."""

from __future__ import annotations

import copy

import pytest
import yaml

from localai_runtime.errors import SpecError
from localai_runtime.settings import resource_dir
from localai_runtime.spec.build import build_spec
from localai_runtime.spec.patching import apply_directory

SPEC = {
    "openapi": "3.1.0",
    "paths": {"/a": {"post": {"operationId": "a"}}, "/b": {"get": {"operationId": "b"}}},
    "components": {"schemas": {
        "AReq": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "BReq": {"type": "object", "properties": {"y": {"type": "string"}}, "required": ["y"]},
    }},
}


def run(tmp_path, files: dict[str, object]):
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    spec = copy.deepcopy(SPEC)
    applied = apply_directory(spec, tmp_path)
    return spec, applied


def test_json_patch_and_overlay_apply_in_file_name_order(tmp_path):
    spec, applied = run(tmp_path, {
        "20-overlay.yaml": {
            "overlay": "1.0.0", "info": {"title": "t", "version": "1"},
            "actions": [
                {"target": "$.components.schemas[*].properties", "update": {"z": {"type": "boolean"}}},
                {"target": "$.components.schemas.BReq.required", "update": "z"},
                {"target": "$.paths['/b']", "remove": True},
            ],
        },
        "10-patch.json": '[{"op": "add", "path": "/components/schemas/AReq/properties/w", "value": {"const": 1}}]',
        "README.txt": "not a patch",
    })
    assert applied == ["10-patch.json", "20-overlay.yaml"]
    assert spec["components"]["schemas"]["AReq"]["properties"] == {
        "x": {"type": "integer"}, "w": {"const": 1}, "z": {"type": "boolean"},
    }
    assert spec["components"]["schemas"]["BReq"]["required"] == ["y", "z"]
    assert "/b" not in spec["paths"]


@pytest.mark.parametrize(("content", "expected"), [
    ([{"op": "add", "path": "/components/x", "value": 1}, {"op": "replace", "path": "/nope/deeper", "value": 1}],
     r"p\.yaml: operation 1 \(replace /nope/deeper\): path not found"),
    ([{"op": "test", "path": "/openapi", "value": "3.0.0"}],
     r"p\.yaml: operation 0 \(test /openapi\): test failed"),
    ([{"path": "/openapi"}], r"p\.yaml: operation 0: not a JSON Patch operation"),
    ([{"op": "frobnicate", "path": "/openapi"}], r"p\.yaml: operation 0 \(frobnicate /openapi\): invalid operation"),
    ({"overlay": "1.0.0", "actions": [{"target": "$.components.schemas.Nope", "update": {}}]},
     r"p\.yaml: action 0 \(target \$\.components\.schemas\.Nope\): target matched nothing"),
    ({"overlay": "1.0.0", "actions": [{"target": "$[", "update": {}}]}, r"action 0 \(target \$\[\): invalid JSONPath"),
    ({"overlay": "1.0.0", "actions": [{"target": "$.openapi", "update": {"a": 1}}]}, r"can only update an object"),
    ({"overlay": "1.0.0", "actions": [{"target": "$.paths"}]}, r"needs 'update' or 'remove: true'"),
    ({"overlay": "2.0.0", "actions": []}, r"overlay version '2\.0\.0' is not supported"),
    ({"something": "else"}, r"p\.yaml: neither a JSON Patch"),
])
def test_failures_name_file_index_path_and_reason(tmp_path, content, expected):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(SpecError, match=expected):
        apply_directory(copy.deepcopy(SPEC), tmp_path)


SHIPPED_PATCHES = ["00-info.yaml", "10-localai-extensions.yaml", "20-completion-stream.yaml", "30-embedding-base64.yaml",
                   "40-input-item-any-of.yaml", "41-easy-assistant-output-parts.yaml",
                   "45-responses-client-metadata.yaml", "46-function-tool-strict-optional.yaml",
                   "47-reasoning-item-param.yaml"]
EXTENSIONS_REF = {"$ref": "#/components/schemas/LocalAIExtensions"}


def test_shipped_patches_apply_to_the_upstream_document(built_spec):
    """Every shipped patch file is applied, in name order, and each one's effect is in the
    built document (and not in the upstream document without patches)."""
    shipped = sorted(path.name for path in resource_dir("patches").iterdir() if path.is_file())
    assert built_spec.primary.patches == shipped == SHIPPED_PATCHES
    assert built_spec.patches == [*SHIPPED_PATCHES, "anthropic/00-info.yaml", "anthropic/10-security.yaml",
                                  "anthropic/20-stop-sequences.yaml"]
    upstream = build_spec(spec_path=None, fragments_dir=resource_dir("spec"), patches_dir=None).document
    document, schemas = built_spec.document, built_spec.document["components"]["schemas"]

    # 00-info: the document names this server
    assert document["info"]["title"] == "OpenAI API (served by localai-runtime)" != upstream["info"]["title"]
    assert document["info"]["x-localai-runtime"]["description"].startswith("OpenAI's published document, merged")
    assert "x-localai-runtime" not in upstream["info"]

    # 10-localai-extensions: one shared component, referenced by the three request schemas
    assert "LocalAIExtensions" not in upstream["components"]["schemas"]
    extensions = schemas["LocalAIExtensions"]
    assert extensions["type"] == "object" and extensions["additionalProperties"] is False
    assert {"top_k", "min_p", "grammar", "ignore_eos", "cutstrings", "trimstrings"} <= set(extensions["properties"])
    chat = next(part for part in schemas["CreateChatCompletionRequest"]["allOf"] if "messages" in part.get("properties", {}))
    assert chat["properties"]["x-localai-extensions"] == EXTENSIONS_REF
    assert schemas["CreateCompletionRequest"]["properties"]["x-localai-extensions"] == EXTENSIONS_REF
    assert schemas["CreateEmbeddingRequest"]["properties"]["x-localai-extensions"] == EXTENSIONS_REF
    responses = next(part for part in schemas["CreateResponse"]["allOf"] if "input" in part.get("properties", {}))
    assert responses["properties"]["x-localai-extensions"] == EXTENSIONS_REF

    # 20-completion-stream: a declared event stream for completions, with its chunk schema
    assert "CreateCompletionStreamResponse" not in upstream["components"]["schemas"]
    chunk = schemas["CreateCompletionStreamResponse"]
    assert chunk["properties"]["object"] == {"type": "string", "const": "text_completion"}
    finish = chunk["properties"]["choices"]["items"]["properties"]["finish_reason"]
    assert finish["type"] == ["string", "null"] and None in finish["enum"]
    ok = document["paths"]["/v1/completions"]["post"]["responses"]["200"]["content"]
    assert ok["text/event-stream"] == {"schema": {"$ref": "#/components/schemas/CreateCompletionStreamResponse"}}
    assert "text/event-stream" not in upstream["paths"]["/v1/completions"]["post"]["responses"]["200"]["content"]

    # 30-embedding-base64: an embedding is a list of floats or a base64 string
    embedding = schemas["Embedding"]["properties"]["embedding"]
    assert embedding["oneOf"] == [{"type": "array", "items": {"type": "number", "format": "float"}},
                                  {"type": "string", "contentEncoding": "base64"}]
    assert "oneOf" not in upstream["components"]["schemas"]["Embedding"]["properties"]["embedding"]

    # 40-input-item-any-of: an input item may match several forms (a message is easy and full)
    assert "oneOf" not in schemas["InputItem"] and schemas["InputItem"]["anyOf"] == \
        upstream["components"]["schemas"]["InputItem"]["oneOf"]

    # 41-easy-assistant-output-parts: an easy message's content may be earlier output parts
    content = schemas["EasyInputMessage"]["properties"]["content"]
    assert content["anyOf"][:2] == upstream["components"]["schemas"]["EasyInputMessage"]["properties"]["content"]["oneOf"]
    assert content["anyOf"][2]["items"]["anyOf"][0] == {"$ref": "#/components/schemas/OutputTextContent"}

    # 45-responses-client-metadata: the Responses request names client_metadata (string values)
    assert responses["properties"]["client_metadata"]["anyOf"][0]["additionalProperties"] == {"type": "string"}
    upstream_responses = next(part for part in upstream["components"]["schemas"]["CreateResponse"]["allOf"]
                              if "input" in part.get("properties", {}))
    assert "client_metadata" not in upstream_responses["properties"]

    # 46-function-tool-strict-optional: a function tool may leave strict out
    assert schemas["FunctionTool"]["required"] == ["type", "name", "parameters"]
    assert "strict" in upstream["components"]["schemas"]["FunctionTool"]["required"]

    # 47-reasoning-item-param: an input reasoning item needs only its type; output keeps ReasoningItem
    reasoning_ref = {"$ref": "#/components/schemas/ReasoningItemParam"}
    assert reasoning_ref in schemas["Item"]["oneOf"] and schemas["ReasoningItemParam"]["required"] == ["type"]
    assert {"$ref": "#/components/schemas/ReasoningItem"} in upstream["components"]["schemas"]["Item"]["oneOf"]
    assert schemas["ReasoningItem"] == upstream["components"]["schemas"]["ReasoningItem"]
