"""The benchmark clients: one set, used the same way for every server measured.

A client shares the machine with the server it measures, so what the client itself spends is
taken from the server (on two cores, a Python HTTP client costs about as much CPU per short
request as the server does). Each measurement therefore comes from two clients:

- **httpx** (async or sync), what most Python callers use; its own CPU time per request is
  reported so that a figure bounded by the client can be told from one bounded by the server;
- a **lean** client: ``wrk`` (C) for request rates, and for streams a blocking socket that
  decodes HTTP/1.1 chunked bodies and SSE lines itself (no HTTP library per event).

Figures only; nothing here asserts.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

import httpx


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def short_chat(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
                       "temperature": 0}).encode()


async def overhead_httpx(url: str, model: str, concurrency: int, seconds: float) -> dict[str, float]:
    """Short chat completions from ``concurrency`` httpx tasks sharing one client."""
    latencies: list[float] = []
    body = short_chat(model)
    headers = {"content-type": "application/json"}
    deadline = time.perf_counter() + seconds
    errors = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, trust_env=False) as client:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post("/v1/chat/completions", content=body, headers=headers)
                if response.status_code != 200:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        cpu = _cpu_seconds()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu
    return {"rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "errors": errors,
            "client_cpu_ms_per_request": cpu / len(latencies) * 1000}


_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def _milliseconds(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def overhead_wrk(url: str, model: str, concurrency: int, seconds: float) -> dict[str, float]:
    """The same requests from wrk (C, keep-alive, one thread)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % short_chat(model).decode())
    try:
        output = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "--latency", "-s", script.name,
             url + "/v1/chat/completions"], capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(script.name)
    figures = {"errors": 0.0}
    for line in output.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(parts[1])
        elif parts[:1] == ["50%"]:
            figures["p50_ms"] = _milliseconds(parts[1])
        elif parts[:1] == ["99%"]:
            figures["p99_ms"] = _milliseconds(parts[1])
        elif line.strip().startswith("Non-2xx"):
            figures["errors"] = float(parts[-1])
    return figures


def _content(event: bytes) -> bool:
    """Whether an SSE ``data:`` line carries generated text (chat delta or completion text)."""
    if not event.startswith(b"data: {"):
        return False
    choices = json.loads(event[6:])["choices"]
    return bool(choices) and bool(choices[0].get("delta", {}).get("content") or choices[0].get("text"))


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line and headers, what was read past them) of the next response on ``sock``."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection before the response headers")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return head, rest


def _tally(lines: Iterable[bytes], start: float) -> tuple[int, float, float]:
    """(content events, seconds from ``start`` to the first, seconds to the end) of SSE lines."""
    first = None
    count = 0
    for line in lines:
        if _content(line):
            count += 1
            if first is None:
                first = time.perf_counter() - start
    return count, first if first is not None else float("nan"), time.perf_counter() - start


def _chunked(sock: socket.socket, rest: bytes) -> Iterator[bytes]:
    """The decoded body of a chunked HTTP/1.1 response, chunk by chunk, as it arrives."""
    buffer = rest
    while True:
        while b"\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
        size_line, buffer = buffer.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return
        while len(buffer) < size + 2:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the response ended inside a chunk")
            buffer += data
        yield buffer[:size]
        buffer = buffer[size + 2:]


def stream_lean(url: str, path: str, body: dict) -> tuple[int, float, float]:
    """(content events, seconds to the first, total seconds) of one streamed request, over a
    plain socket: the request written by hand, the chunked body and SSE lines decoded here."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
               f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    start = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(request + payload)
        head, rest = _read_head(sock)
        status = int(head.split(b" ", 2)[1])
        if status != 200 or b"transfer-encoding: chunked" not in head.lower():
            raise RuntimeError(f"{url}{path}: status {status}, expected a chunked 200 stream")
        return _tally(_lines(_chunked(sock, rest)), start)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")


def _response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length body, read from a kept-alive socket."""
    head, body = _read_head(sock)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection inside a response body")
        body += data
    return head


def poll_lean(url: str, path: str, stop: threading.Event, interval: float) -> list[float]:
    """Latencies (seconds) of ``GET path`` on one kept-alive plain socket, every ``interval``
    seconds until ``stop`` is set: for a thread beside the load."""
    parts = urlsplit(url)
    request = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    latencies = []
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        while not stop.is_set():
            start = time.perf_counter()
            sock.sendall(request)
            _response(sock)
            latencies.append(time.perf_counter() - start)
            stop.wait(interval)
    return latencies


def stream_httpx(url: str, path: str, body: dict) -> tuple[int, float, float]:
    """The same figures through ``httpx.Client.stream`` and ``iter_lines``."""
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=300, trust_env=False) as client, \
            client.stream("POST", path, json=body) as response:
        return _tally((line.encode() for line in response.iter_lines()), start)


def stream_cpu(stream, url: str, path: str, body: dict) -> tuple[int, float, float, float]:
    """``stream``'s figures plus this process's CPU seconds per content event."""
    cpu = _cpu_seconds()
    count, first, total = stream(url, path, body)
    return count, first, total, (_cpu_seconds() - cpu) / max(count, 1)
