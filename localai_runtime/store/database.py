""":class:`Store`: the async API of the durable store.

Every query runs in the store's own :class:`~concurrent.futures.ThreadPoolExecutor` (one worker
for SQLite, whose writers serialise anyway; a few for server databases), never on the event
loop. Failures of the database (cannot open, disk full, read-only, locked beyond the busy
timeout, not a database, a server that cannot be reached) come out as :class:`StoreError`
naming what failed and where, with any password in the URL shown as ``***``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from localai_runtime.store import conversations, responses, retention
from localai_runtime.store.engine import BUSY_TIMEOUT_S, describe, make_engine, passwords, resolve
from localai_runtime.store.paging import check_page
from localai_runtime.store.records import ResponseRecord, StoreError
from localai_runtime.store.schema import migrate

logger = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_FILE = "localai.db"
_WORKERS = {"sqlite": 1}
_DEFAULT_WORKERS = 4
_FAILURES = (SQLAlchemyError, OSError, ImportError)


def _reason(exc: BaseException, url: URL) -> str:
    """The driver's own words where there are some (without SQLAlchemy's statement dump), on one
    line, with any password of ``url`` hidden."""
    said = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    words = " ".join(str(said).split()) or type(exc).__name__
    for password in passwords(url):
        words = words.replace(password, "***")
    return words


def _open_engine(url: URL, workers: int, busy_timeout_s: float) -> Engine:
    where = describe(url)
    try:
        engine = make_engine(url, pool_size=workers, busy_timeout_s=busy_timeout_s)
    except _FAILURES as exc:
        raise StoreError(f"cannot open the store at {where}: {_reason(exc, url)}") from exc
    try:
        version = migrate(engine)
    except StoreError:
        engine.dispose()
        raise
    except _FAILURES as exc:
        engine.dispose()
        raise StoreError(f"cannot open the store at {where}: {_reason(exc, url)}") from exc
    logger.info("store at %s open (schema version %d)", where, version)
    return engine


class Store:
    """Stored responses and conversations; open with :meth:`open`, finish with :meth:`close`."""

    def __init__(self, engine: Engine, executor: ThreadPoolExecutor) -> None:
        self.engine = engine
        self.where = describe(engine.url)
        self._executor = executor
        self._closed = False

    @staticmethod
    def sqlite_url(data_dir: Path) -> str:
        """The URL of the SQLite file ``localai.db`` in ``data_dir``."""
        path = Path(data_dir).expanduser().absolute() / SQLITE_FILE
        return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)

    @classmethod
    async def open(cls, url: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Store:
        """Open (creating and migrating as needed) the database at ``url``."""
        try:
            parsed = resolve(make_url(url))
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
            raise StoreError(f"cannot open the store: the store URL is not a database URL ({exc})") from None
        workers = _WORKERS.get(parsed.get_backend_name(), _DEFAULT_WORKERS)
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="localai-store")
        try:
            engine = await asyncio.get_running_loop().run_in_executor(
                executor, _open_engine, parsed, workers, busy_timeout_s
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(engine, executor)

    async def close(self) -> None:
        """Close the database's connections and let the worker threads end."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.dispose)
        finally:
            self._executor.shutdown(wait=False)
        logger.info("store at %s closed", self.where)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"cannot {what}: the store at {self.where} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, what, fn, args)

    def _call(self, what: str, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(self.engine, *args)
        except _FAILURES as exc:
            raise StoreError(f"cannot {what} in the store at {self.where}: {_reason(exc, self.engine.url)}") from exc

    # responses

    async def put_response(self, record: ResponseRecord, *, appended: list[dict] | None = None) -> bool:
        """Store ``record``; with ``appended``, add those items to its conversation at once (both
        or neither: ``False`` when the conversation is gone)."""
        return await self._run(f"store response {record.id!r}", responses.put_response, record, appended)

    async def get_response(self, response_id: str) -> ResponseRecord | None:
        return await self._run(f"read response {response_id!r}", responses.get_response, response_id)

    async def delete_response(self, response_id: str) -> bool:
        return await self._run(f"delete response {response_id!r}", responses.delete_response, response_id)

    async def chain(self, response_id: str) -> list[ResponseRecord]:
        """``response_id`` and its ancestors, oldest first; :class:`MissingResponse` if one is gone."""
        return await self._run(f"read the responses before {response_id!r}", responses.chain, response_id)

    async def input_items(
        self, response_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[dict], bool] | None:
        check_page(limit, order)
        what = f"read the input items of response {response_id!r}"
        return await self._run(what, responses.input_items, response_id, after, limit, order)

    # conversations

    async def create_conversation(
        self, conversation_id: str, created_at: float, metadata: dict | None, items: list[dict]
    ) -> None:
        what = f"create conversation {conversation_id!r}"
        await self._run(what, conversations.create_conversation, conversation_id, created_at, metadata, items)

    async def get_conversation(self, conversation_id: str) -> dict | None:
        what = f"read conversation {conversation_id!r}"
        return await self._run(what, conversations.get_conversation, conversation_id)

    async def update_conversation(self, conversation_id: str, metadata: dict | None) -> dict | None:
        what = f"update conversation {conversation_id!r}"
        return await self._run(what, conversations.update_conversation, conversation_id, metadata)

    async def delete_conversation(self, conversation_id: str) -> bool:
        what = f"delete conversation {conversation_id!r}"
        return await self._run(what, conversations.delete_conversation, conversation_id)

    async def add_items(self, conversation_id: str, items: list[dict]) -> bool:
        what = f"add items to conversation {conversation_id!r}"
        return await self._run(what, conversations.add_items, conversation_id, items)

    async def list_items(
        self, conversation_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[dict], bool] | None:
        check_page(limit, order)
        what = f"list the items of conversation {conversation_id!r}"
        return await self._run(what, conversations.list_items, conversation_id, after, limit, order)

    async def all_items(self, conversation_id: str) -> list[dict] | None:
        what = f"read the items of conversation {conversation_id!r}"
        return await self._run(what, conversations.all_items, conversation_id)

    async def get_item(self, conversation_id: str, item_id: str) -> dict | None:
        what = f"read item {item_id!r} of conversation {conversation_id!r}"
        return await self._run(what, conversations.get_item, conversation_id, item_id)

    async def delete_item(self, conversation_id: str, item_id: str) -> bool:
        what = f"delete item {item_id!r} of conversation {conversation_id!r}"
        return await self._run(what, conversations.delete_item, conversation_id, item_id)

    # retention

    async def purge(self, older_than_s: float, now: float | None = None) -> int:
        """Delete responses and conversations created more than ``older_than_s`` before ``now``."""
        cutoff = (time.time() if now is None else now) - older_than_s
        return await self._run("purge old responses and conversations", retention.purge, cutoff)
