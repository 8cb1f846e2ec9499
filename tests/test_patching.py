"""Patch files: RFC 6902 JSON Patch and OpenAPI Overlay 1.0, with errors that name the culprit."""

from __future__ import annotations

import copy

import pytest
import yaml

from localai_runtime.errors import SpecError
from localai_runtime.patching import apply_directory

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


def test_shipped_patches_apply_to_the_upstream_document(built_spec):
    assert built_spec.patches and all(name.endswith((".yaml", ".yml", ".json")) for name in built_spec.patches)
