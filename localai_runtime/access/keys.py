"""The keys file and the key ring: which presented key is whose, and what it may reach.

A keys file (YAML) lists keys by name with the sha256 of the key (``localai-runtime hash-key``
prints it), optional ``models`` (globs of model names), ``operations`` (operationIds or tags),
``admin`` (the local management operations), ``requests_per_minute`` and ``max_concurrent``.
Keys given flat (``--api-key``, ``LOCALAI_API_KEYS``) are unrestricted. A presented key is
hashed and compared with every key's hash in constant time; keys and hashes are never logged
or returned, only names.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from localai_runtime.access.limits import Limits
from localai_runtime.errors import SpecError
from localai_runtime.spec.build import Operation

SCOPE_KEY = "localai_key"
"""Key in ``scope["extensions"]`` of the :class:`Key` a request was authorized with."""

ADMIN_OPERATIONS = frozenset({"listRegistrations", "reloadConfiguration"})
"""The local management operations only ``admin`` (and unrestricted) keys may call."""

FILE_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "sha256"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z0-9._@-]{1,64}$"},
            "sha256": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            "models": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "operations": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "admin": {"type": "boolean"},
            "requests_per_minute": {"type": "integer", "minimum": 1},
            "max_concurrent": {"type": "integer", "minimum": 1},
        }}}},
}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Key:
    name: str
    digest: bytes
    models: tuple[str, ...] | None = None
    operations: frozenset[str] | None = None
    admin: bool = False
    limits: Limits = field(default_factory=Limits)

    def allows_model(self, model: str) -> bool:
        return self.models is None or any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def allows_operation(self, operation_id: str) -> bool:
        if operation_id in ADMIN_OPERATIONS and not self.admin:
            return False
        return self.operations is None or operation_id in self.operations or operation_id in ADMIN_OPERATIONS


class KeyRing:
    def __init__(self, keys: Sequence[Key]) -> None:
        self.keys = list(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def match(self, presented: str) -> Key | None:
        """The key whose hash is the presented key's, comparing with every key's hash so the time
        taken does not tell which came close."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found


def _flat(keys: Sequence[str]) -> list[Key]:
    return [Key(f"key-{i + 1}", hashlib.sha256(key.encode()).digest(), admin=True) for i, key in enumerate(keys)]


def _operations(names: Sequence[str], operations: Mapping[str, Operation], where: str) -> frozenset[str]:
    by_tag: dict[str, set[str]] = {}
    for op_id, operation in operations.items():
        by_tag.setdefault(operation.tag or "", set()).add(op_id)
    chosen: set[str] = set()
    for i, name in enumerate(names):
        if name in operations:
            chosen.add(name)
        elif name in by_tag:
            chosen |= by_tag[name]
        else:
            raise SpecError(f"{where}.operations[{i}]: {name!r} is neither an operationId nor a tag of the document")
    return frozenset(chosen)


def load_key_ring(path: Path | None, flat: Sequence[str], operations: Mapping[str, Operation]) -> KeyRing:
    keys = _flat(flat)
    if path is None:
        return KeyRing(keys)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: cannot read the keys file: {exc}") from exc
    errors = sorted(Draft202012Validator(FILE_SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in errors[0].absolute_path)
        message = errors[0].message if "sha256" not in where else "must be the 64 hex digits of a sha256"
        raise SpecError(f"{path}: {where.lstrip('.') or 'the file'}: {message}")
    names: set[str] = set()
    for i, entry in enumerate(data["keys"]):
        where = f"{path}: keys[{i}]"
        if entry["name"] in names:
            raise SpecError(f"{where}.name: {entry['name']!r} is used twice")
        names.add(entry["name"])
        keys.append(Key(
            entry["name"], bytes.fromhex(entry["sha256"]),
            models=tuple(entry["models"]) if "models" in entry else None,
            operations=_operations(entry["operations"], operations, where) if "operations" in entry else None,
            admin=bool(entry.get("admin", False)),
            limits=Limits(entry.get("requests_per_minute"), entry.get("max_concurrent")),
        ))
    return KeyRing(keys)
