"""The store on a real PostgreSQL server (``tests/postgres_server.py``, a fresh database per test):
the URLs it accepts, migrations when replicas start at once, two replicas of the server
continuing each other's ``previous_response_id`` chains and conversations (the official openai
client against real ``localai-runtime serve`` processes), and a database that cannot be reached
or entered, named without its password. The API's round trips run here too, through
``any_url`` in ``test_store.py``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from localai_runtime.store import SCHEMA_VERSION, ResponseRecord, Store, StoreError
from localai_runtime.store.schema import MIGRATION_LOCK_KEY
from tests.conftest import REPO, free_port
from tests.postgres_server import PostgresServer

CLI = [sys.executable, "-m", "localai_runtime.cli"]
JSON_ANSWER = {"format": {"type": "json_schema", "name": "a", "strict": True, "schema": {
    "type": "object", "properties": {"answer": {"enum": ["yes", "no"]}}, "required": ["answer"],
    "additionalProperties": False}}}
"""Makes the demo model's answer short and ``completed``."""


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def applied_versions(server: PostgresServer, url: str) -> list[int]:
    with server.connect(database_of(url)) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM localai_schema_version ORDER BY version")]


def open_and_close(url: str) -> str:
    async def main() -> str:
        store = await Store.open(url)
        try:
            await store.put_response(ResponseRecord("resp", 1.0, "demo", "completed", {"id": "resp"}, []))
            assert (await store.get_response("resp")).response == {"id": "resp"}
            assert store.engine.dialect.driver == "psycopg"
            return store.where
        finally:
            await store.close()

    return asyncio.run(main())


@pytest.mark.parametrize("driver", ["postgresql", "postgresql+psycopg", "postgres"])
def test_postgresql_urls_use_psycopg_3_and_are_shown_without_the_password(postgres_server, postgres_url, driver):
    url = driver + postgres_url.removeprefix("postgresql")
    where = open_and_close(url)
    assert where == postgres_url.replace("postgresql:", "postgresql+psycopg:").replace(postgres_server.password, "***")
    assert applied_versions(postgres_server, postgres_url) == list(range(1, SCHEMA_VERSION + 1))


# The child imports the store package alone, under an empty ``localai_runtime`` package (quicker
# than the whole server), and logs at INFO, so the migrations it applied can be counted.
OPEN = """
import asyncio, logging, sys, types
package = types.ModuleType("localai_runtime")
package.__path__ = [sys.argv[2]]
sys.modules["localai_runtime"] = package
from localai_runtime.store import Store
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
async def main():
    store = await Store.open(sys.argv[1])
    await store.close()
asyncio.run(main())
"""


def waiting_for_the_migration_lock(server: PostgresServer, url: str) -> int:
    query = ("SELECT count(*) FROM pg_locks JOIN pg_database ON pg_database.oid = pg_locks.database "
             "WHERE locktype = 'advisory' AND NOT granted AND datname = %s")
    with server.connect() as conn:
        return conn.execute(query, (database_of(url),)).fetchone()[0]


def test_replicas_starting_at_once_on_a_fresh_database_migrate_it_once(postgres_server, postgres_url):
    """The test holds the migration lock until all four processes have found the database empty
    and wait for it, then lets them go at once: one migrates, the others find it done."""
    count = 4
    with postgres_server.connect(database_of(postgres_url)) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        processes = [subprocess.Popen([sys.executable, "-c", OPEN, postgres_url, str(REPO / "localai_runtime")],
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(count)]
        try:
            deadline = time.monotonic() + 60
            while waiting_for_the_migration_lock(postgres_server, postgres_url) < count:
                finished = [p.communicate() for p in processes if p.poll() is not None]
                assert not finished, f"a process ended before taking the lock: {finished}"
                assert time.monotonic() < deadline, "the processes did not all wait for the migration lock"
                time.sleep(0.05)
            holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            results = [process.communicate(timeout=60) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    logs = "".join(err for _, err in results)
    for process, (_, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert f"(schema version {SCHEMA_VERSION})" in err
    for number in range(1, SCHEMA_VERSION + 1):
        assert logs.count(f"applying migration {number}\n") == 1, logs
    assert logs.count("migrated from schema version 0") == 1, logs
    assert applied_versions(postgres_server, postgres_url) == list(range(1, SCHEMA_VERSION + 1))


def test_a_newer_schema_is_refused_naming_the_database_without_its_password(postgres_server, postgres_url):
    open_and_close(postgres_url)
    with postgres_server.connect(database_of(postgres_url)) as conn:
        conn.execute("INSERT INTO localai_schema_version (version) VALUES (99)")
    with pytest.raises(StoreError) as refused:
        asyncio.run(Store.open(postgres_url))
    message = str(refused.value)
    assert "99" in message and f"up to {SCHEMA_VERSION}" in message
    assert database_of(postgres_url) in message and postgres_server.password not in message


@dataclass
class Replica:
    """A ``localai-runtime serve`` process, its base URL and its log."""

    process: subprocess.Popen
    url: str
    log: Path

    def client(self, timeout: float = 180) -> openai.OpenAI:
        """The official client, once ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120)
            assert self.process.poll() is None, f"the replica stopped ({self.process.returncode}):\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"the replica did not get ready:\n{self.log.read_text()}"
            time.sleep(0.1)


@contextlib.contextmanager
def replica(database_url: str, log: Path) -> Iterator[Replica]:
    """``localai-runtime serve`` with the shipped demo registrations on ``database_url``, stopped
    (SIGTERM, then SIGKILL) when the block ends."""
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen([*CLI, "serve", "--port", str(port), "--database-url", database_url, "--no-watch"],
                                   cwd=REPO, stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        yield Replica(process, f"http://127.0.0.1:{port}", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture
def two_replicas(postgres_url, tmp_path) -> Iterator[tuple[openai.OpenAI, openai.OpenAI]]:
    """Two servers started at once on one fresh database (so they migrate it at once too)."""
    with replica(postgres_url, tmp_path / "a.log") as a, replica(postgres_url, tmp_path / "b.log") as b:
        yield a.client(), b.client()
    for log in (a.log, b.log):
        assert "Traceback" not in log.read_text(), log.read_text()


def test_two_replicas_continue_each_others_chains_and_conversations(two_replicas):
    a, b = two_replicas
    first = a.responses.create(model="demo", input="Is the sky blue?", text=JSON_ANSWER)
    second = b.responses.create(model="demo", input="Are you sure?", previous_response_id=first.id, text=JSON_ANSWER)
    third = a.responses.create(model="demo", input="Really?", previous_response_id=second.id, text=JSON_ANSWER)
    turns = [first, second, third]
    assert [turn.status for turn in turns] == ["completed"] * 3
    assert (second.previous_response_id, third.previous_response_id) == (first.id, second.id)
    for before, after in itertools.pairwise(turns):  # each turn's prompt holds the whole chain before it
        assert after.usage.input_tokens >= before.usage.input_tokens + before.usage.output_tokens
    for turn in turns:
        for client in (a, b):
            assert client.responses.retrieve(turn.id).to_dict() == turn.to_dict()
    assert [item.content[0].text for item in b.responses.input_items.list(third.id)] == ["Really?"]

    conversation = a.conversations.create(metadata={"k": "v"}, items=[{"role": "user", "content": "Hello"}])
    assert b.conversations.retrieve(conversation.id).to_dict() == conversation.to_dict()
    b.conversations.items.create(conversation.id, items=[{"type": "message", "role": "user", "content": "Blue?"}])
    answer = b.responses.create(model="demo", input="Answer.", conversation=conversation.id, text=JSON_ANSWER)
    assert answer.status == "completed" and answer.usage.input_tokens > first.usage.input_tokens
    items = a.conversations.items.list(conversation.id, order="asc").data
    assert [item.role for item in items] == ["user", "user", "user", "assistant"]
    assert [item.content[0].text for item in items[:3]] == ["Hello", "Blue?", "Answer."]
    assert items[3].id == answer.output[0].id
    assert a.responses.retrieve(answer.id).to_dict() == answer.to_dict()


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_a_database_that_cannot_be_reached_stops_serve_and_check_naming_it_without_the_password():
    port = free_port()  # nothing listens there
    url = f"postgresql://localai:pw-not-shown@127.0.0.1:{port}/the_store"
    for command in (["check"], ["serve", "--port", str(free_port()), "--no-watch"]):
        result = run(*command, "--database-url", url)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "localai-runtime: error: cannot open the response store" in result.stderr, result.stderr
        assert f"postgresql+psycopg://localai:***@127.0.0.1:{port}/the_store" in result.stderr, result.stderr
        assert "Connection refused" in result.stderr
        assert "pw-not-shown" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_check_names_a_database_it_cannot_enter_and_one_it_opened_without_passwords(postgres_server, postgres_url):
    wrong = postgres_url.replace(postgres_server.password, "pw-wrong")
    refused = run("check", "--database-url", wrong)
    assert refused.returncode == 2, refused.stderr
    assert "password authentication failed" in refused.stderr and database_of(postgres_url) in refused.stderr
    assert "pw-wrong" not in refused.stdout + refused.stderr

    checked = run("check", "--database-url", postgres_url)
    assert checked.returncode == 0, checked.stderr
    assert f"store postgresql+psycopg://localai:***@127.0.0.1:{postgres_server.port}/" in checked.stdout
    assert postgres_server.password not in checked.stdout + checked.stderr
