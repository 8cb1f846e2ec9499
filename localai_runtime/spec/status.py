"""Which operations this server implements, said in the document it serves.

Every operation gets ``x-localai-status``: ``implemented`` when a handler serves it,
``not-implemented`` otherwise. An unimplemented one also has its ``summary`` (what Swagger UI
shows beside the path) prefixed with ``Not implemented:`` and its ``description`` opened by a
sentence saying it answers 501. ``info.description`` says how many operations are implemented,
and each top-level tag whose operations are all implemented or all not gets the same status
(its description says so when none is). operationIds, paths and operation tags stay as they
are: clients generate code from them.

:func:`mark_status` does not touch the document it is given (the built document is shared, in
tests by many servers): it returns a copy in which only the containers on the way to what
changes are new (the paths, each path item, each operation, ``info``, the tag list and its
entries); everything else, components included, is shared with the original. Marking a marked
document replaces the earlier marks (with the same operations, it changes nothing).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from localai_runtime.spec.build import index_operations

__all__ = ["IMPLEMENTED", "NOT_IMPLEMENTED", "STATUS", "SUMMARY_PREFIX", "mark_status"]

STATUS = "x-localai-status"
IMPLEMENTED = "implemented"
NOT_IMPLEMENTED = "not-implemented"
SUMMARY_PREFIX = "Not implemented: "
OPENAI_ENVELOPE = "OpenAI's error envelope (`not_implemented_error`)"
DESCRIPTION_NOTE = f"**Not implemented by this server:** it answers 501 with {OPENAI_ENVELOPE} for this operation."
TAG_NOTE = "**Not implemented by this server** (its operations answer 501)."
INFO_NOTE_START = "This server implements "


def _without(text: str | None, note: str, separator: str) -> str | None:
    """``text`` without the ``note`` an earlier marking put before it (None if nothing is left)."""
    if text and text.startswith(note):
        text = text[len(note):].removeprefix(separator)
    return text or None


def _with(text: str | None, note: str, separator: str) -> str:
    text = _without(text, note, separator)
    return note + separator + text if text else note


def _mark_operation(operation: dict[str, Any], implemented: bool, note: str = DESCRIPTION_NOTE) -> dict[str, Any]:
    marked = dict(operation)
    summary = _without(operation.get("summary"), SUMMARY_PREFIX, "")
    description = _without(operation.get("description"), note, "\n\n")
    if implemented:
        marked[STATUS] = IMPLEMENTED
        for key, value in (("summary", summary), ("description", description)):
            if value is None:
                marked.pop(key, None)
            else:
                marked[key] = value
        return marked
    marked[STATUS] = NOT_IMPLEMENTED
    marked["summary"] = SUMMARY_PREFIX + (summary or str(operation.get("operationId", "")))
    marked["description"] = _with(description, note, "\n\n")
    return marked


def _mark_tag(tag: Any, seen: set[bool] | None) -> Any:
    if not isinstance(tag, dict):
        return tag
    marked = {key: value for key, value in tag.items() if key != STATUS}
    description = _without(tag.get("description"), TAG_NOTE, " ")
    if description is None:
        marked.pop("description", None)
    else:
        marked["description"] = description
    if seen and len(seen) == 1:  # some operations, all implemented or all not
        implemented = seen == {True}
        marked[STATUS] = IMPLEMENTED if implemented else NOT_IMPLEMENTED
        if not implemented:
            marked["description"] = _with(description, TAG_NOTE, " ")
    return marked


def _info_description(described: str | None, implemented: int, total: int) -> str:
    note = (
        f"This server implements {implemented} of these {total} operations (`{STATUS}: {IMPLEMENTED}`); "
        f"the others answer 501 and their summaries begin with \"{SUMMARY_PREFIX.strip()}\"."
    )
    kept = [part for part in (described or "").split("\n\n") if part and not part.startswith(INFO_NOTE_START)]
    return "\n\n".join([*kept, note])


def mark_status(document: dict[str, Any], implemented: Collection[str],
                envelope: str = OPENAI_ENVELOPE) -> dict[str, Any]:
    """A copy of ``document`` saying which operations are ``implemented`` (operationIds); an
    unimplemented one's description says it answers 501 with ``envelope``."""
    note = DESCRIPTION_NOTE.replace(OPENAI_ENVELOPE, envelope)
    operations = index_operations(document, source="the document to mark")
    statuses: dict[str | None, set[bool]] = {}
    paths: dict[str, Any] = {}
    for route, item in (document.get("paths") or {}).items():
        paths[route] = dict(item) if isinstance(item, dict) else item
    for op_id, operation in operations.items():
        done = op_id in implemented
        paths[operation.path][operation.method] = _mark_operation(operation.spec, done, note)
        for tag in operation.spec.get("tags") or [None]:
            statuses.setdefault(tag, set()).add(done)
    marked = {**document, "paths": paths}
    count = sum(1 for op_id in operations if op_id in implemented)
    info = dict(document.get("info") or {})
    info["description"] = _info_description(info.get("description"), count, len(operations))
    marked["info"] = info
    if isinstance(document.get("tags"), list):
        marked["tags"] = [_mark_tag(tag, statuses.get(tag.get("name")) if isinstance(tag, dict) else None)
                          for tag in document["tags"]]
    return marked
