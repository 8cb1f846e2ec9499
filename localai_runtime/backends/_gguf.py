"""Reading a GGUF file's metadata without loading the model, for start-up checks.

The header is read directly (``gguf.GGUFReader`` would also build every token string of the
vocabulary to answer three keys): the key/value pairs, skipping the values not needed, then every
tensor's description, checked against the file's size. So a truncated or damaged file still fails
here (at ``check`` and start-up) instead of at the first request.
"""

from __future__ import annotations

import functools
import mmap
import struct
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

MAGIC = b"GGUF"
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
WANTED = ("general.architecture", "tokenizer.chat_template", "tokenizer.ggml.eos_token_id", "general.alignment")
TOKENS = "tokenizer.ggml.tokens"
_LENGTH = struct.Struct("<Q")


class _Reader:
    def __init__(self, data: mmap.mmap | bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ValueError(f"the file ends at byte {len(self.data)}, inside its header")
        (value,) = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += size
        return value

    def string(self) -> str:
        length = self.take("Q")
        if self.at + length > len(self.data):
            raise ValueError(f"the file ends at byte {len(self.data)}, inside its header")
        text = bytes(self.data[self.at:self.at + length]).decode("utf-8", errors="replace")
        self.at += length
        return text

    def skip_string(self) -> None:
        length = self.take("Q")
        self.at += length

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` strings (a vocabulary: 262,144 for Gemma) in one tight loop."""
        data, at, length = self.data, self.at, _LENGTH.unpack_from
        try:
            for _ in range(count):
                at += 8 + length(data, at)[0]
        except struct.error:
            at = len(data) + 1
        if at > len(data):
            raise ValueError(f"the file ends at byte {len(data)}, inside its header")
        self.at = at

    def value(self, kind: int, keep: bool) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string() if keep else self.skip_string()
        if kind == _ARRAY:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:
                self.at += struct.calcsize(_SCALARS[item]) * count
                return None
            if item == _STRING and not keep:
                self.skip_strings(count)
                return None
            values = [self.value(item, keep) for _ in range(count)]
            return values if keep else None
        raise ValueError(f"unknown value type {kind} at byte {self.at}")


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        reader = _Reader(data)
        if bytes(data[:4]) != MAGIC:
            raise ValueError("not a GGUF file (bad magic)")
        reader.at = 4
        version = reader.take("I")
        if version < 2:
            raise ValueError(f"GGUF version {version} is not supported")
        n_tensors, n_kv = reader.take("Q"), reader.take("Q")
        found: dict[str, Any] = {}
        tokens_at = None
        for _ in range(n_kv):
            key, kind = reader.string(), reader.take("I")
            if key == TOKENS:
                tokens_at = reader.at
            found[key] = reader.value(kind, key in WANTED)
        tensors_end = 0
        for _ in range(n_tensors):
            name = reader.string()
            dims = [reader.take("Q") for _ in range(reader.take("I"))]
            kind, offset = reader.take("I"), reader.take("Q")
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
            elements = 1
            for dim in dims:
                elements *= dim
            tensors_end = max(tensors_end, offset + elements // block * size)
            if not name:
                raise ValueError("a tensor without a name")
        alignment = int(found.get("general.alignment") or 32)
        start = -(-reader.at // alignment) * alignment
        if start + tensors_end > len(data):
            raise ValueError(f"the file is truncated: its tensors need {start + tensors_end} bytes, it has {len(data)}")
        eos = found.get("tokenizer.ggml.eos_token_id")
        eos_text = ""
        if tokens_at is not None and eos is not None:
            reader.at = tokens_at + 4 + 8  # item type, count
            reader.skip_strings(eos)
            eos_text = reader.string()
        return {"architecture": found.get("general.architecture"),
                "chat_template": found.get("tokenizer.chat_template"), "eos_token": eos_text}


def metadata(path: Path) -> dict[str, Any]:
    """Architecture, chat template and EOS text of a GGUF file; raises on a damaged file.

    Read once per file version (path, size, modification time): several registrations often
    share one model file.
    """
    stat = path.stat()
    return _metadata(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _metadata(path: Path, _size: int, _mtime_ns: int) -> dict[str, Any]:
    return _read(path)


def inspect(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(metadata, None)``, or ``(None, why)`` when ``path`` is not a readable GGUF model."""
    try:
        return metadata(path), None
    except Exception as exc:  # noqa: BLE001 - damaged files fail in assorted ways
        return None, f"cannot read the GGUF model {path}: {type(exc).__name__}: {exc}"


def missing(path: Path | None) -> str | None:
    """The problem when a registration's model file is not there, or None."""
    if path is None or not path.is_file():
        return f"model file not found: {path}"
    return None
