"""The durable store (``localai_runtime.store``) on real SQLite files: responses and their chains,
input items, conversations and their items, retention, migrations (also from two processes at
once), and the failures that must come out as ``StoreError`` naming the database. The API's
round trips (``any_url``) run on a real PostgreSQL database too; what is PostgreSQL's own lives
in ``test_store_postgres.py``."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import event

from localai_runtime.store import SCHEMA_VERSION, MissingResponse, ResponseRecord, Store, StoreError, migrate

REPO = Path(__file__).resolve().parent.parent
VERSION_TABLE = "localai_schema_version"


def record(response_id: str, previous: str | None = None, *, created_at: float = 1000.0, status: str = "completed",
           items: int = 2) -> ResponseRecord:
    return ResponseRecord(
        id=response_id,
        created_at=created_at,
        model="demo",
        status=status,
        response={"id": response_id, "object": "response", "status": status, "output": [{"type": "message"}]},
        input_items=[{"id": f"{response_id}_in{n}", "type": "message", "content": f"é {n}"} for n in range(items)],
        previous_response_id=previous,
    )


def versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute(f"SELECT version FROM {VERSION_TABLE}")]


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "data" / "localai.db"


@pytest.fixture
def url(db_path) -> str:
    return Store.sqlite_url(db_path.parent)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request, url) -> str:
    """The SQLite file's URL, then a fresh PostgreSQL database's (``tests/postgres_server.py``):
    the store's API answers alike on both."""
    return url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


async def nothing(store: Store) -> None:
    pass


def with_store(url: str, body) -> None:
    async def main() -> None:
        store = await Store.open(url)
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_open_creates_the_file_in_wal_mode(tmp_path):
    data_dir = tmp_path / "a" / "b"
    url = Store.sqlite_url(data_dir)
    assert url == f"sqlite:///{data_dir / 'localai.db'}"

    async def body(store: Store) -> None:
        assert store.where == str(data_dir / "localai.db")

    with_store(url, body)
    assert (data_dir / "localai.db").is_file()
    with sqlite3.connect(data_dir / "localai.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert versions(data_dir / "localai.db") == [SCHEMA_VERSION] == [1]


def test_put_get_replace_delete(any_url):
    async def body(store: Store) -> None:
        assert await store.get_response("resp_1") is None
        first = record("resp_1", status="in_progress")
        await store.put_response(first)
        assert await store.get_response("resp_1") == first
        done = record("resp_1", status="completed", items=3)
        await store.put_response(done)
        assert await store.get_response("resp_1") == done
        assert await store.delete_response("resp_1") is True
        assert await store.get_response("resp_1") is None
        assert await store.delete_response("resp_1") is False

    with_store(any_url, body)


def test_chain_is_oldest_first_and_names_a_missing_ancestor(any_url):
    async def body(store: Store) -> None:
        for response_id, previous in [("r1", None), ("r2", "r1"), ("r3", "r2"), ("other", None)]:
            await store.put_response(record(response_id, previous))
        assert [r.id for r in await store.chain("r3")] == ["r1", "r2", "r3"]
        assert [r.id for r in await store.chain("r1")] == ["r1"]
        chain = await store.chain("r3")
        assert chain[1] == record("r2", "r1")

        await store.delete_response("r1")
        with pytest.raises(MissingResponse) as missing:
            await store.chain("r3")
        assert missing.value.response_id == "r1"
        assert isinstance(missing.value, LookupError)
        with pytest.raises(MissingResponse) as missing:
            await store.chain("nope")
        assert missing.value.response_id == "nope"

        await store.put_response(record("r1", "r3"))  # a loop never hangs
        with pytest.raises(StoreError, match="loop"):
            await store.chain("r3")

    with_store(any_url, body)


def test_input_items_pages(any_url):
    async def body(store: Store) -> None:
        await store.put_response(record("resp", items=5))
        ids = [f"resp_in{n}" for n in range(5)]

        async def page(**kwargs) -> tuple[list[str], bool]:
            items, more = await store.input_items("resp", **kwargs)
            return [item["id"] for item in items], more

        assert await page(after=None, limit=20, order="asc") == (ids, False)
        assert await page(after=None, limit=20, order="desc") == (ids[::-1], False)
        assert await page(after=None, limit=2, order="asc") == (ids[:2], True)
        assert await page(after="resp_in1", limit=2, order="asc") == (ids[2:4], True)
        assert await page(after="resp_in3", limit=2, order="asc") == (ids[4:], False)
        assert await page(after="resp_in3", limit=2, order="desc") == (["resp_in2", "resp_in1"], True)
        assert await page(after="resp_in1", limit=2, order="desc") == (["resp_in0"], False)
        assert await page(after="unknown", limit=2, order="asc") == ([], False)
        assert await store.input_items("missing", after=None, limit=2, order="asc") is None
        with pytest.raises(ValueError, match="order"):
            await store.input_items("resp", after=None, limit=2, order="sideways")

    with_store(any_url, body)


def test_conversations_crud(any_url):
    async def body(store: Store) -> None:
        assert await store.get_conversation("conv") is None
        await store.create_conversation("conv", 1234.0, {"topic": "x"}, [])
        assert await store.get_conversation("conv") == {"id": "conv", "created_at": 1234.0, "metadata": {"topic": "x"}}
        updated = await store.update_conversation("conv", {"topic": "y"})
        assert updated == {"id": "conv", "created_at": 1234.0, "metadata": {"topic": "y"}}
        assert await store.get_conversation("conv") == updated
        assert (await store.update_conversation("conv", None))["metadata"] is None
        assert await store.update_conversation("nope", {}) is None
        with pytest.raises(StoreError, match="conv"):  # the id is taken
            await store.create_conversation("conv", 1.0, None, [])
        assert await store.delete_conversation("conv") is True
        assert await store.get_conversation("conv") is None
        assert await store.delete_conversation("conv") is False

    with_store(any_url, body)


def test_conversation_items(any_url):
    async def body(store: Store) -> None:
        await store.create_conversation("conv", 1.0, None, [{"id": "i0", "type": "message"}, {"id": "i1"}])
        assert await store.add_items("conv", [{"id": "i2"}, {"id": "i3"}, {"id": "i4"}]) is True
        assert await store.add_items("nope", [{"id": "x"}]) is False
        ids = [f"i{n}" for n in range(5)]
        assert [item["id"] for item in await store.all_items("conv")] == ids
        assert await store.all_items("nope") is None

        async def page(**kwargs) -> tuple[list[str], bool]:
            items, more = await store.list_items("conv", **kwargs)
            return [item["id"] for item in items], more

        assert await page(after=None, limit=20, order="asc") == (ids, False)
        assert await page(after=None, limit=2, order="desc") == (["i4", "i3"], True)
        assert await page(after="i1", limit=2, order="asc") == (["i2", "i3"], True)
        assert await page(after="i3", limit=5, order="asc") == (["i4"], False)
        assert await page(after="i1", limit=5, order="desc") == (["i0"], False)
        assert await page(after="unknown", limit=5, order="asc") == ([], False)
        assert await store.list_items("nope", after=None, limit=5, order="asc") is None

        assert await store.get_item("conv", "i0") == {"id": "i0", "type": "message"}
        assert await store.get_item("conv", "nope") is None
        assert await store.get_item("nope", "i0") is None
        assert await store.delete_item("conv", "i2") is True
        assert await store.delete_item("conv", "i2") is False
        await store.add_items("conv", [{"id": "i5"}])
        assert [item["id"] for item in await store.all_items("conv")] == ["i0", "i1", "i3", "i4", "i5"]
        with pytest.raises(StoreError):  # an item id appears once per conversation
            await store.add_items("conv", [{"id": "i0"}])
        with pytest.raises(ValueError, match="id"):
            await store.add_items("conv", [{"type": "message"}])

    with_store(any_url, body)


def test_delete_conversation_removes_its_items(url, db_path):
    async def body(store: Store) -> None:
        await store.create_conversation("a", 1.0, None, [{"id": "x"}, {"id": "y"}])
        await store.create_conversation("b", 1.0, None, [{"id": "x"}])
        assert await store.delete_conversation("a") is True
        assert await store.get_item("a", "x") is None
        assert await store.get_item("b", "x") == {"id": "x"}

    with_store(url, body)
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT conversation_id, id FROM localai_conversation_items").fetchall() == [("b", "x")]


def test_purge_deletes_only_old_rows(any_url):
    async def body(store: Store) -> None:
        await store.put_response(record("old", created_at=100.0))
        await store.put_response(record("new", "old", created_at=950.0))
        await store.create_conversation("old_conv", 100.0, None, [{"id": "a"}, {"id": "b"}])
        await store.create_conversation("new_conv", 950.0, None, [{"id": "a"}])
        assert await store.purge(100.0, now=1000.0) == 4  # 1 response, 1 conversation, 2 items
        assert await store.get_response("old") is None
        assert await store.get_response("new") is not None
        assert await store.get_conversation("old_conv") is None
        assert await store.all_items("new_conv") == [{"id": "a"}]
        assert await store.purge(100.0, now=1000.0) == 0
        with pytest.raises(MissingResponse):
            await store.chain("new")

    with_store(any_url, body)


def test_data_survives_close_and_reopen(any_url):
    async def write(store: Store) -> None:
        await store.put_response(record("resp"))
        await store.create_conversation("conv", 1.0, {"k": "v"}, [{"id": "i"}])

    async def read(store: Store) -> None:
        assert await store.get_response("resp") == record("resp")
        assert await store.get_conversation("conv") == {"id": "conv", "created_at": 1.0, "metadata": {"k": "v"}}
        assert await store.all_items("conv") == [{"id": "i"}]

    with_store(any_url, write)
    with_store(any_url, read)


def test_migrating_twice_does_nothing_and_a_newer_schema_is_refused(url, db_path):
    async def body(store: Store) -> None:
        assert migrate(store.engine) == SCHEMA_VERSION

    with_store(url, body)
    with_store(url, body)
    assert versions(db_path) == [SCHEMA_VERSION]

    with sqlite3.connect(db_path) as db:
        db.execute(f"UPDATE {VERSION_TABLE} SET version = 99")
    with pytest.raises(StoreError) as refused:
        asyncio.run(Store.open(url))
    assert "99" in str(refused.value) and f"up to {SCHEMA_VERSION}" in str(refused.value)
    assert str(db_path) in str(refused.value)


# The child imports the store package alone, under an empty ``localai_runtime`` package: quicker
# than the whole server, and it shows the store needs nothing else from localai_runtime.
OPEN_AT_ONCE = """
import asyncio, sys, types
package = types.ModuleType("localai_runtime")
package.__path__ = [sys.argv[2]]
sys.modules["localai_runtime"] = package
from localai_runtime.store import Store
print("ready", flush=True)
sys.stdin.readline()
async def main():
    store = await Store.open(sys.argv[1])
    await store.close()
asyncio.run(main())
print("opened", flush=True)
"""


def test_two_processes_opening_a_fresh_database_migrate_it_once(url, db_path):
    processes = [
        subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(REPO / "localai_runtime")], cwd=REPO, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
        for process in processes:  # both start as close together as two writes allow
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [process.communicate(timeout=30) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == "opened"
    assert versions(db_path) == [SCHEMA_VERSION]


def test_a_path_that_cannot_be_opened_is_named(tmp_path):
    in_the_way = tmp_path / "dir"
    (in_the_way / "localai.db").mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(StoreError) as failed:
        asyncio.run(Store.open(Store.sqlite_url(in_the_way)))
    assert str(in_the_way / "localai.db") in str(failed.value)

    a_file = tmp_path / "plain"
    a_file.write_text("not a folder")
    with pytest.raises(StoreError) as failed:
        asyncio.run(Store.open(Store.sqlite_url(a_file / "data")))
    assert str(a_file / "data" / "localai.db") in str(failed.value)


def test_a_file_that_is_not_a_database_is_refused(db_path, url):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"this is not a SQLite database, it is just text" * 100)
    with pytest.raises(StoreError) as failed:
        asyncio.run(Store.open(url))
    assert str(db_path) in str(failed.value) and "not a database" in str(failed.value)


def test_a_write_to_a_read_only_database_raises_store_error(url, db_path):
    async def fill(store: Store) -> None:
        await store.put_response(record("resp"))

    with_store(url, fill)

    async def body(store: Store) -> None:
        assert (await store.get_response("resp")) == record("resp")
        with pytest.raises(StoreError, match="readonly") as failed:
            await store.put_response(record("another"))
        assert "'another'" in str(failed.value) and str(db_path) in str(failed.value)

    with_store(f"sqlite:///file:{db_path}?mode=ro&uri=true", body)


def test_a_database_locked_beyond_the_busy_timeout_raises_store_error(url, db_path):
    with_store(url, nothing)  # create the database first
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock

    async def main() -> None:
        store = await Store.open(url, busy_timeout_s=0.1)
        try:
            assert await store.get_response("resp") is None  # WAL: readers are not blocked
            with pytest.raises(StoreError, match="locked"):
                await store.put_response(record("resp"))
        finally:
            await store.close()

    try:
        asyncio.run(main())
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_queries_run_in_the_store_thread_never_on_the_event_loop(url):
    threads: set[tuple[int, str]] = set()

    async def body(store: Store) -> None:
        def note(*_args) -> None:
            threads.add((threading.get_ident(), threading.current_thread().name))

        event.listen(store.engine, "before_cursor_execute", note)
        await asyncio.gather(*(store.put_response(record(f"r{n}")) for n in range(5)))
        await store.create_conversation("conv", 1.0, None, [{"id": "i"}])
        await store.list_items("conv", after=None, limit=5, order="asc")
        await store.chain("r3")
        assert threading.get_ident() not in {ident for ident, _ in threads}

    with_store(url, body)
    assert threads and all(name.startswith("localai-store") for _, name in threads)
    assert len(threads) == 1  # SQLite: one worker


def test_a_closed_store_says_so(any_url):
    async def main() -> None:
        store = await Store.open(any_url)
        await store.close()
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.get_response("resp")

    asyncio.run(main())
