"""A storm of streamed requests cut at random points, from a few threads at once.

50 streams on an echo registration with two instances (``parallel: 2``, a small delay per
piece) and a handful on the shipped ``demo`` model (llama-cpp-python) are opened, read for a
seeded-random number of lines (``-1``: closed before the answer arrives) and closed. Afterwards
every generation has stopped and given its instance back, none ran on an instance another was
using, and the server answers the next request in full.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import socket
import time

import httpx
import pytest

from tests.conftest import demo_and_echo_server
from tests.fake_backend import EchoInstance

ECHO_STREAMS = 50
DEMO_STREAMS = 6
BEFORE_THE_ANSWER = 4
"""Of the echo streams, how many close their connection before the answer's headers."""
THREADS = 4
MESSAGES = [{"role": "user", "content": "hi"}]

CONFIGS = """
registration: {model: storm, operations: [createChatCompletion, createCompletion]}
local_settings: {backend: echo, delay_s: 0.01, parallel: 2}
"""


@pytest.fixture(scope="module")
def storm_server(built_spec, tmp_path_factory):
    with demo_and_echo_server(built_spec, tmp_path_factory.mktemp("storm-configs"), CONFIGS, queue_size=64) as live:
        yield live


def readiness(server) -> dict:
    with server.http() as http:
        return http.get("/readyz").json()


def settled(server, quiet: float = 0.3, timeout: float = 10) -> dict:
    """/readyz once no generation has run nor started for ``quiet`` seconds (or at the timeout)."""
    deadline = time.monotonic() + timeout
    last, since = readiness(server), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = readiness(server)
        if now["active_generations"] or now["generations_total"] != last["generations_total"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return readiness(server)


def cut_stream(url: str, path: str, body: dict, lines: int) -> int:
    """Open a stream, read ``lines`` lines (blank ones included) and close it; the status."""
    with httpx.Client(base_url=url, timeout=30) as http, http.stream("POST", path, json=body) as response:
        if response.status_code == 200 and lines > 0:
            for count, _line in enumerate(response.iter_lines(), 1):
                if count >= lines:
                    break
        return response.status_code


def cut_before_the_answer(port: int, path: str, body: dict) -> None:
    """Send the whole request and close the connection without reading anything."""
    payload = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: storm\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)


def test_a_storm_of_cut_streams_leaves_nothing_running(storm_server):
    rng = random.Random(1234)
    jobs = []
    for index in range(ECHO_STREAMS):
        path = rng.choice(["/v1/chat/completions", "/v1/completions"])
        body = {"model": "storm", "stream": True, "n": rng.choice([1, 2]), "seed": index,
                **({"messages": MESSAGES} if path.endswith("chat/completions") else {"prompt": "hi"})}
        jobs.append((path, body, -1 if index < BEFORE_THE_ANSWER else rng.randint(0, 30)))
    for index in range(DEMO_STREAMS):
        body = {"model": "demo", "stream": True, "messages": MESSAGES, "max_tokens": 1500, "seed": index,
                "x-localai-extensions": {"ignore_eos": True}}
        jobs.append(("/v1/chat/completions", body, rng.randint(0, 40)))
    # The connections closed before their answer go first: the server has long started (and
    # stopped) their generations when the last stream is cut.
    jobs[BEFORE_THE_ANSWER:] = rng.sample(jobs[BEFORE_THE_ANSWER:], len(jobs) - BEFORE_THE_ANSWER)

    def run(job) -> int | None:
        path, body, lines = job
        if lines < 0:
            return cut_before_the_answer(storm_server.settings.port, path, body)
        return cut_stream(storm_server.url, path, body, lines)

    overlaps = EchoInstance.overlaps
    before = readiness(storm_server)
    assert before["active_generations"] == 0
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(run, jobs))
    answered = [status for status in statuses if status is not None]
    assert answered == [200] * (ECHO_STREAMS + DEMO_STREAMS - BEFORE_THE_ANSWER)  # nothing refused, nothing failed

    after = settled(storm_server)
    assert after["active_generations"] == 0
    # An answered stream started its generation before its answer. A request whose client left
    # before the answer is cancelled where the server notices: while it waits for the model or a
    # free instance it never starts one; once its generation has started, that stops.
    started = after["generations_total"] - before["generations_total"]
    assert len(jobs) - BEFORE_THE_ANSWER <= started <= len(jobs)
    assert EchoInstance.overlaps == overlaps  # no instance was lent while its thread still ran

    with storm_server.http() as http:
        busy = {r["model"]: r["busy_instances"] for r in http.get("/v1/localai/registrations").json()["data"]}
        assert set(busy.values()) == {0}, busy
        streamed = http.post("/v1/chat/completions", json={"model": "storm", "messages": MESSAGES, "stream": True})
        events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] == "stop"
        demo = http.post("/v1/chat/completions", json={"model": "demo", "messages": MESSAGES, "max_tokens": 4})
        assert demo.status_code == 200 and demo.json()["usage"]["completion_tokens"] <= 4
