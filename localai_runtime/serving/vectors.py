"""Embedding vectors as the client asked for them, for local and relayed embeddings alike."""

from __future__ import annotations

import base64
import struct


def encode(vector: list[float], encoding: str) -> list[float] | str:
    """A vector as the client asked for it: floats, or ``base64`` of little-endian float32."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector
