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


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_EVENT = (b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",'
          b'"choices":[{"index":0,"delta":{"content":"first"},"finish_reason":null}]}\n\n')
_STREAM_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_ANSWERS = {
    # a stream that ends (its last chunk sent) without [DONE]
    "cut": _STREAM_HEAD + _chunk(_EVENT) + b"0\r\n\r\n",
    # a stream broken off: one event, then the connection closes in the middle of the body
    "broken": _STREAM_HEAD + _chunk(_EVENT),
    # llama-server's error field in the middle of a stream
    "error_field": _STREAM_HEAD + _chunk(_EVENT) + _chunk(b'error: {"code":500,"message":"boom"}\n\n')
    + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n",
    # a whole JSON answer to a stream request (an engine that ignores stream: true)
    "json": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
    # a whole stream, kept alive
    "stream": _STREAM_HEAD + _chunk(_EVENT) + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n",
    "500": b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 45\r\n\r\n"
           b'{"error":{"message":"kaput","type":"server"}}',
    "401": b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 39\r\n\r\n"
           b'{"error":{"message":"Invalid API Key"}}',
}


class StallingServer:
    """An engine scripted by ``mode``, on 127.0.0.1. It reads each request's head and body, then:
    ``silent`` sends nothing; ``one_event`` sends a stream's headers and one event; ``cut`` and
    ``broken`` close the connection after their answer; the other modes send the answer of ``_ANSWERS`` (and
    keep the connection for the next request). Then it waits until the client closes. Records
    the request heads, the connections accepted and how many the client closed."""

    def __init__(self, mode: str = "silent") -> None:
        self.mode = mode
        self.heads: list[str] = []
        self.connections = 0
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
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = self._receive(conn)
                    if chunk is None:
                        return
                    data += chunk
                head, data = data.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    chunk = self._receive(conn)
                    if chunk is None:
                        return
                    data += chunk
                data = data[length:]
                self.heads.append(head.decode("latin-1"))
                if self.mode == "one_event":
                    conn.sendall(_STREAM_HEAD + _chunk(_EVENT))
                elif self.mode in _ANSWERS:
                    conn.sendall(_ANSWERS[self.mode])
                    if self.mode in ("cut", "broken"):
                        return
                    continue  # ready for the next request on this connection
                if self._receive(conn, until_closed=True) is None:
                    return

    def _receive(self, conn: socket.socket, until_closed: bool = False) -> bytes | None:
        """The next bytes from the client; None once it closed the connection (or we stop)."""
        while not self._stopped:
            try:
                conn.settimeout(0.2)
                chunk = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if chunk == b"":
                self.closed_by_client += 1
                return None
            if not until_closed:
                return chunk
        return None

    def stop(self) -> None:
        self._stopped = True
        self._sock.close()
