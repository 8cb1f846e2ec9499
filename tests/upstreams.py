"""Upstream engines for the openai-upstream tests: llama-cpp-python's own server
(``python -m llama_cpp.server``, its ``server`` extra) on the demo model, and a loopback TCP
server that accepts requests and then stalls, recording what it was sent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


class LlamaServer:
    """``python -m llama_cpp.server`` on ``model`` at 127.0.0.1:``port``; restartable on the same port."""

    def __init__(self, model: Path, port: int, log: Path) -> None:
        self.model, self.port, self.log = model, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", "512", "--n_threads", "1", "--verbose", "false"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-2000:]
            try:
                if httpx.get(self.base_url + "/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"llama_cpp.server on port {self.port} did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class StallingServer:
    """Accepts connections on 127.0.0.1, reads each request's head and then, by ``mode``, sends
    nothing (``silent``) or a stream's headers and one event (``one_event``), and waits. Records
    the request heads it read and how many connections the client closed."""

    def __init__(self, mode: str = "silent") -> None:
        self.mode = mode
        self.heads: list[str] = []
        self.closed_by_client = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.heads.append(data.split(b"\r\n\r\n")[0].decode("latin-1"))
            if self.mode == "one_event":
                event = b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",' \
                        b'"choices":[{"index":0,"delta":{"content":"first"},"finish_reason":null}]}\n\n'
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                             b"transfer-encoding: chunked\r\n\r\n" + f"{len(event):x}\r\n".encode() + event + b"\r\n")
            while not self._stopped:  # stall until the client gives up
                try:
                    conn.settimeout(0.2)
                    if conn.recv(65536) == b"":
                        self.closed_by_client += 1
                        return
                except TimeoutError:
                    continue
                except OSError:
                    self.closed_by_client += 1
                    return

    def stop(self) -> None:
        self._stopped = True
        self._sock.close()
