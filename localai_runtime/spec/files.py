"""Reading YAML and JSON documents, and the parse cache for the large upstream spec.

YAML is parsed with libyaml (``yaml.CSafeLoader``). YAML timestamps stay strings: an OpenAPI
document is JSON data, and a ``datetime`` would not survive ``/openapi.json``.

The upstream OpenAI document is a large YAML file, slow to parse; its parsed form is cached
under the cache directory, keyed by the file's sha256 and written with :mod:`marshal` for this
Python (faster to read than JSON), so later start-ups skip the parse. :func:`copy_document`
copies parsed documents the same way (faster than a JSON round trip).
"""

from __future__ import annotations

import hashlib
import json
import logging
import marshal
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import yaml

from localai_runtime.errors import SpecError

logger = logging.getLogger(__name__)

YAML_SUFFIXES = (".yaml", ".yml")
DOCUMENT_SUFFIXES = (*YAML_SUFFIXES, ".json")


class _Loader(yaml.CSafeLoader):
    """libyaml's safe loader, with timestamps kept as plain strings."""


_Loader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(cast(yaml.ScalarNode, node))
)


def cache_dir() -> Path:
    """Where generated files live: ``$LOCALAI_CACHE_DIR``, else the XDG cache directory."""
    explicit = os.environ.get("LOCALAI_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "localai-runtime"


def parse(data: bytes, source: str | Path) -> Any:
    """Parse YAML or JSON bytes; ``source`` names the file in error messages."""
    try:
        if str(source).endswith(".json"):
            return json.loads(data)
        return yaml.load(data, Loader=_Loader)  # noqa: S506 - CSafeLoader is safe
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"{source}: not valid {'JSON' if str(source).endswith('.json') else 'YAML'}: {exc}") from exc


def load(path: Path) -> Any:
    """Read and parse one document file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse(data, path)


def load_all(path: Path) -> list[Any]:
    """Every document of a file: a JSON file's single value, or each document of a YAML stream."""
    if path.suffix == ".json":
        return [load(path)]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        return list(yaml.load_all(data, Loader=_Loader))  # noqa: S506 - CSafeLoader is safe
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc


def entries(path: Path) -> list[Any]:
    """A file's entries: one per document, or each item of a document that is a list (what a
    registration file holds); empty documents are skipped."""
    out: list[Any] = []
    for doc in load_all(path):
        if doc is not None:
            out.extend(doc if isinstance(doc, list) else [doc])
    return out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_cached(path: Path) -> tuple[Any, str]:
    """Parse ``path`` through the parse cache; returns the document and its sha256."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    cached = cache_dir() / "spec-cache" / f"{digest}.{_CACHE_FORMAT}"
    try:
        document = marshal.loads(cached.read_bytes())
        if isinstance(document, dict):  # marshal has no checksum: a damaged file may load as anything
            return document, digest
    except (OSError, ValueError, EOFError, TypeError):  # absent, or damaged: parsed again
        pass
    document = parse(data, path)
    _write_atomically(cached, marshal.dumps(document))
    return document, digest


_CACHE_FORMAT = f"marshal{marshal.version}-{sys.implementation.cache_tag}"


def copy_document(document: Any) -> Any:
    """A deep copy of parsed JSON data (dicts, lists, strings, numbers, booleans, None). Unlike a
    JSON round trip it keeps an object shared where the original shares it (YAML anchors)."""
    return marshal.loads(marshal.dumps(document))


def _write_atomically(target: Path, data: bytes) -> None:
    """Best effort: a read-only or full cache directory only costs speed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, target)
    except OSError as exc:
        logger.warning("could not write the parse cache %s: %s", target, exc)


def files_in(directory: Path) -> list[Path]:
    """The document files of a directory, in file-name order."""
    if not directory.is_dir():
        raise SpecError(f"{directory}: not a directory")
    return sorted(
        (p for p in directory.iterdir() if p.suffix in DOCUMENT_SUFFIXES and p.is_file()),
        key=lambda p: p.name,
    )
