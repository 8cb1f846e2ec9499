"""Writing one section of BENCHMARKS.md, keeping the others (each benchmark script owns one)."""

from __future__ import annotations

import datetime
from pathlib import Path


def write_section(path: Path, heading: str, command: str, lines: list[str]) -> None:
    """Replace (or add, at the end) the section under ``heading`` (up to the next ``## ``)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    when = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    body = f"{heading}\n\n`{command}` on {when}:\n\n```\n" + "\n".join(lines) + "\n```\n"
    if f"\n{heading}\n" in text:
        before, after = text.split(f"\n{heading}\n", 1)
        rest = after.split("\n## ", 1)
        tail = "\n## " + rest[1] if len(rest) == 2 else ""
        path.write_text(before.rstrip() + "\n\n" + body + tail)
    else:
        path.write_text(text.rstrip() + "\n\n" + body)
