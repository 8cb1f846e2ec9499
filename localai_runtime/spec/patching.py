"""Applying the operator's patch files to the spec, in memory.

Two formats, told apart by their shape:

- RFC 6902 JSON Patch (``jsonpatch``): a list of operations, for exact edits.
- OpenAPI Overlay 1.0: a mapping with ``overlay: 1.0.x`` and ``actions``, each action a
  JSONPath ``target`` (RFC 9535, ``jsonpath-rfc9535``) with an ``update`` merged into every
  node it selects, or ``remove: true``.

A patch that fails raises :class:`SpecError` naming the file, the index of the operation or
action, its path or target, and why.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpath_rfc9535
import jsonpointer

from localai_runtime.errors import SpecError
from localai_runtime.spec import files

logger = logging.getLogger(__name__)


def apply_directory(spec: dict[str, Any], directory: Path) -> list[str]:
    """Apply every patch file of ``directory`` in file-name order; returns the files applied."""
    applied = []
    for path in files.files_in(directory):
        apply_file(spec, path)
        applied.append(path.name)
    return applied


def apply_file(spec: dict[str, Any], path: Path) -> None:
    patch = files.load(path)
    if isinstance(patch, list):
        apply_json_patch(spec, patch, source=path)
    elif isinstance(patch, dict) and "overlay" in patch:
        apply_overlay(spec, patch, source=path)
    else:
        raise SpecError(
            f"{path}: neither a JSON Patch (a list of operations) "
            f"nor an Overlay 1.0 document (a mapping with 'overlay' and 'actions')"
        )
    logger.debug("applied patch %s", path)


def apply_json_patch(spec: dict[str, Any], operations: list[Any], *, source: Path | str) -> None:
    for index, operation in enumerate(operations):
        where = f"{source}: operation {index}"
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise SpecError(f"{where}: not a JSON Patch operation (needs 'op' and 'path')")
        where += f" ({operation['op']} {operation['path']})"
        try:
            jsonpatch.JsonPatch([operation]).apply(spec, in_place=True)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise SpecError(f"{where}: test failed: {_short(exc)}") from exc
        except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
            raise SpecError(f"{where}: path not found: {_short(exc)}") from exc
        except jsonpatch.InvalidJsonPatch as exc:
            raise SpecError(f"{where}: invalid operation: {exc}") from exc


def _short(exc: Exception) -> str:
    """jsonpointer's messages end with a dump of the whole document; keep the reason."""
    text = str(exc).split(" in {", 1)[0]
    return text if len(text) <= 200 else text[:197] + "..."


def apply_overlay(spec: dict[str, Any], overlay: dict[str, Any], *, source: Path | str) -> None:
    version = str(overlay.get("overlay", ""))
    if not version.startswith("1.0"):
        raise SpecError(f"{source}: overlay version {version!r} is not supported (1.0.x is)")
    actions = overlay.get("actions")
    if not isinstance(actions, list) or not actions:
        raise SpecError(f"{source}: an overlay needs a non-empty 'actions' list")
    for index, action in enumerate(actions):
        _apply_action(spec, action, where=f"{source}: action {index}")


def _apply_action(spec: dict[str, Any], action: Any, *, where: str) -> None:
    if not isinstance(action, dict) or not isinstance(action.get("target"), str):
        raise SpecError(f"{where}: an action needs a 'target' JSONPath string")
    target = action["target"]
    where += f" (target {target})"
    remove = action.get("remove", False)
    if remove is not True and "update" not in action:
        raise SpecError(f"{where}: an action needs 'update' or 'remove: true'")
    try:
        nodes = jsonpath_rfc9535.find(target, spec)
    except jsonpath_rfc9535.JSONPathError as exc:
        raise SpecError(f"{where}: invalid JSONPath: {exc}") from exc
    if not nodes:
        raise SpecError(f"{where}: target matched nothing")
    if remove is True:
        # Remove from the deepest location first so that list indices stay valid.
        for node in sorted(nodes, key=lambda n: n.location, reverse=True):
            _remove(spec, node.location, where=where)
        return
    update = action["update"]
    for node in nodes:
        _update(node.value, update, where=f"{where} at {node.path()}")


def _update(target: Any, update: Any, *, where: str) -> None:
    if isinstance(target, dict) and isinstance(update, dict):
        _merge(target, update)
    elif isinstance(target, list):
        target.append(update)
    else:
        raise SpecError(
            f"{where}: can only update an object with an object, or append to an array "
            f"(found {type(target).__name__})"
        )


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


def _remove(spec: Any, location: tuple[Any, ...], *, where: str) -> None:
    if not location:
        raise SpecError(f"{where}: cannot remove the whole document")
    parent = spec
    for key in location[:-1]:
        parent = parent[key]
    del parent[location[-1]]
