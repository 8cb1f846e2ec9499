"""Reading a GGUF file's metadata without loading the model, for start-up checks.

``gguf.GGUFReader`` maps the file and lays out every tensor, so a truncated or damaged file
fails here (at ``check`` and start-up) instead of at the first request.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gguf


def metadata(path: Path) -> dict[str, Any]:
    """Architecture, chat template and EOS text of a GGUF file; raises on a damaged file.

    Read once per file version (path, size, modification time): several registrations often
    share one model file.
    """
    stat = path.stat()
    return _metadata(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _metadata(path: Path, _size: int, _mtime_ns: int) -> dict[str, Any]:
    reader = gguf.GGUFReader(path)
    fields = reader.fields

    def value(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    eos = value("tokenizer.ggml.eos_token_id")
    tokens = fields.get("tokenizer.ggml.tokens")
    return {
        "architecture": value("general.architecture"),
        "chat_template": value("tokenizer.chat_template"),
        "eos_token": tokens.contents(eos) if tokens is not None and eos is not None else "",
    }


def inspect(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(metadata, None)``, or ``(None, why)`` when ``path`` is not a readable GGUF model."""
    try:
        return metadata(path), None
    except Exception as exc:  # noqa: BLE001 - gguf raises assorted errors for damaged files
        return None, f"cannot read the GGUF model {path}: {type(exc).__name__}: {exc}"


def missing(path: Path | None) -> str | None:
    """The problem when a registration's model file is not there, or None."""
    if path is None or not path.is_file():
        return f"model file not found: {path}"
    return None
