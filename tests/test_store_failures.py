"""The response store failing while a server runs, the way it fails for operators, and coming back
without a restart, with the official openai client against live servers.

SQLite: the data directory is a small tmpfs that another program fills up (a full disk is what
stops an SQLite store in practice; as root, ``chmod`` stops nothing, and a read-only remount of a
filesystem with files open for writing is refused with EBUSY). Mounting needs root, as the tests
run in CI; elsewhere these tests fail, never skip. PostgreSQL: the store's database refuses
connections and its sessions are ended, as when the database server restarts or fails over.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from tests.conftest import hold_instances, live_server, wait_until
from tests.postgres_server import PostgresServer

SHORT = {"model": "demo", "input": "Hi", "max_output_tokens": 16}
"""The demo model stops at the limit: ``incomplete``, a final state that is stored."""
BULK = {f"k{i}": "x" * 512 for i in range(16)}
"""Metadata that makes a stored response some 10 kB: more than the free pages a full disk leaves SQLite."""


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` until the block ends (root only, as in CI)."""
    path.mkdir(exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "localai-test", str(path)],
                             capture_output=True, text=True)
    assert mounted.returncode == 0, f"mounting a tmpfs needs root: {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


@contextlib.contextmanager
def full(directory: Path) -> Iterator[None]:
    """``directory``'s filesystem filled up to the last block by another file, until the block ends."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    try:
        yield
    finally:
        filler.unlink()


def errors_counted(live, code: str) -> float:
    with live.http() as http:
        text = http.get("/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "localai_errors_total" and sample.labels.get("code") == code)


def streamed(client: openai.OpenAI, **fields) -> list:
    with client.responses.create(stream=True, **{**SHORT, **fields}) as stream:
        return list(stream)


def check_stream_failed_unsaved(events: list, caplog) -> str:
    """The events of a stream whose answer could not be stored: it began and sent its text, then ended
    with an ``error`` event and ``response.failed`` saying so, never ``completed``/``incomplete``; the
    log says which response and why at ERROR. Returns the response's id."""
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and "response.output_text.delta" in kinds
    assert kinds[-2:] == ["error", "response.failed"], kinds
    assert not {"response.completed", "response.incomplete"} & set(kinds)
    response_id = events[0].response.id
    failed = events[-1].response
    assert failed.id == response_id and failed.status == "failed"
    assert failed.error.code == "service_unavailable" and "could not be stored" in failed.error.message
    assert events[-2].code == "service_unavailable" and response_id in events[-2].message
    logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert any(f"store response '{response_id}'" in line and "full" in line for line in logged), logged
    return response_id


def test_a_full_disk_fails_a_streamed_response_visibly_and_the_store_recovers_once_there_is_room(
        built_spec, tmp_path, caplog):
    with small_disk(tmp_path / "data") as data_dir, live_server(built_spec, data_dir=data_dir) as live:
        client = live.client()
        kept = client.responses.create(**SHORT)
        conversation = client.conversations.create(items=[{"role": "user", "content": "Hello"}])
        before = errors_counted(live, "service_unavailable")
        with full(data_dir), caplog.at_level(logging.ERROR):
            response_id = check_stream_failed_unsaved(streamed(client, metadata=BULK), caplog)
            assert errors_counted(live, "service_unavailable") == before + 1
            with pytest.raises(openai.NotFoundError):  # never stored: reading still works
                client.responses.retrieve(response_id)
            with pytest.raises(openai.InternalServerError) as refused:  # answered whole: a 503, nothing kept
                client.responses.create(**SHORT, metadata=BULK, conversation=conversation.id)
            assert refused.value.status_code == 503 and "could not be stored" in refused.value.message
            assert client.responses.retrieve(kept.id).id == kept.id

        # Room again, no restart: the next requests are answered and stored.
        events = streamed(client, metadata=BULK)
        assert events[-1].type == "response.incomplete", [event.type for event in events]
        assert client.responses.retrieve(events[-1].response.id).to_dict() == events[-1].response.to_dict()
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response_id)
        items = client.conversations.items.list(conversation.id).data
        assert len(items) == 1  # the refused turn left nothing in its conversation
        turn = client.responses.create(**SHORT, conversation=conversation.id)
        assert client.responses.retrieve(turn.id).status == "incomplete"
        assert len(client.conversations.items.list(conversation.id).data) == 3


def test_a_background_response_whose_outcome_cannot_be_stored_is_stored_once_there_is_room(
        built_spec, tmp_path, caplog):
    """Its failure is retried, not left as ``queued`` for a client polling it to wait on forever."""
    with small_disk(tmp_path / "data") as data_dir, live_server(built_spec, data_dir=data_dir) as live, \
            caplog.at_level(logging.ERROR):
        client = live.client()
        filled = contextlib.ExitStack()
        with hold_instances(live, "createResponse", "demo"):
            queued = client.responses.create(**SHORT, metadata=BULK, background=True)
            assert queued.status == "queued"
            filled.enter_context(full(data_dir))
        with filled:  # it runs now, and cannot store that it does
            wait_until(lambda: any(f"background response {queued.id}" in record.getMessage()
                                   for record in caplog.records), "the failure is logged")
            assert client.responses.retrieve(queued.id).status == "queued"
        wait_until(lambda: client.responses.retrieve(queued.id).status == "failed", "its outcome is stored")
        failed = client.responses.retrieve(queued.id)
        assert failed.error.code == "service_unavailable" and "store" in failed.error.message
        assert client.responses.create(**SHORT, metadata=BULK).status == "incomplete"


@contextlib.contextmanager
def unreachable(server: PostgresServer, url: str) -> Iterator[None]:
    """The database of ``url`` takes no connections and its sessions are ended (a restart, a
    failover), until the block ends."""
    name = sql.Identifier(url.rsplit("/", 1)[1].split("?")[0])
    database = url.rsplit("/", 1)[1].split("?")[0]
    with server.connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
    try:
        yield
    finally:
        with server.connect("postgres") as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))


def test_a_postgresql_store_that_drops_out_fails_a_streamed_response_visibly_and_recovers(
        built_spec, postgres_server, postgres_url, tmp_path, caplog):
    with live_server(built_spec, data_dir=tmp_path, database_url=postgres_url) as live:
        client = live.client()
        kept = client.responses.create(**SHORT)
        with unreachable(postgres_server, postgres_url), caplog.at_level(logging.ERROR):
            events = streamed(client)
            kinds = [event.type for event in events]
            assert kinds[-2:] == ["error", "response.failed"], kinds
            assert events[-1].response.error.code == "service_unavailable"
            response_id = events[0].response.id
            logged = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
            assert any(f"store response '{response_id}'" in line for line in logged), logged
            with pytest.raises(openai.InternalServerError) as refused:  # neither read nor written
                client.responses.retrieve(response_id)
            assert refused.value.status_code == 503

        assert client.responses.retrieve(kept.id).id == kept.id
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response_id)
        events = streamed(client)
        assert events[-1].type == "response.incomplete"
        assert client.responses.retrieve(events[-1].response.id).status == "incomplete"

