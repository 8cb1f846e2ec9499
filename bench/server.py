"""Starting this server in a subprocess for a benchmark, and waiting until it is ready."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answers(url: str, process: subprocess.Popen, within_s: float, what: str) -> None:
    """Poll ``url`` until it answers 200; RuntimeError if ``process`` exits or ``within_s`` passes."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError(f"{what} did not become ready")
        time.sleep(0.1)


@dataclasses.dataclass(frozen=True)
class Running:
    port: int
    pid: int


@contextlib.contextmanager
def running_server(configs: Path | str, *arguments: str, ready_within_s: float = 180) -> Iterator[Running]:
    """``localai-runtime serve`` on the registrations in ``configs`` (and ``arguments``), on a free
    loopback port; yields its port and pid once ``/readyz`` answers 200, and stops it after."""
    port = free_port()
    command: Sequence[str] = [sys.executable, "-m", "localai_runtime.cli", "serve", "--port", str(port),
                              "--configs", str(configs), "--log-level", "warning", *arguments]
    server = subprocess.Popen(command, cwd=REPO, env=os.environ.copy())
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/readyz", server, ready_within_s, "server")
        yield Running(port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
