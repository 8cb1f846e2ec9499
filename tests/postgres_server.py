"""A throwaway PostgreSQL server for tests, and a fresh database for each test.

:class:`PostgresServer` runs Debian's (or any) PostgreSQL binaries (``initdb`` and ``postgres``,
found on ``PATH``, else in ``/usr/lib/postgresql/*/bin``, newest first) in a temporary directory
of its own: the cluster, a Unix socket folder and the server's log. It listens on 127.0.0.1 only,
on a free port; TCP connections need the superuser's password, a random one, so the URLs the
tests use carry a password that error messages must hide. PostgreSQL refuses to run as root, so
a root test process (as in CI) runs ``initdb`` and the server as ``nobody`` and hands it the
directory (made with :func:`tempfile.mkdtemp`, so ``$TMPDIR`` must be open to ``nobody``). The
server is a child of the test process, not a daemon of ``pg_ctl``: stopping sends it SIGQUIT
(an immediate shutdown), then SIGKILL, and removes the directory.

The fixtures: ``postgres_server`` (one per session) and ``postgres_url`` (a new database,
``t_<uuid>``, per test, dropped afterwards). Without PostgreSQL they fail, never skip: a test
skipped in CI would hide that the store was never tried on PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

SUPERUSER = "localai"
RUN_AS = "nobody"
"""The unprivileged account the server runs as when the tests run as root."""
PROGRAMS = ("initdb", "postgres")
INSTALL = ("PostgreSQL's server programs (initdb, postgres) were not found on PATH or in "
           "/usr/lib/postgresql/*/bin; install Debian's postgresql package "
           "(apt-get install postgresql), as .ci/run does")
START_TIMEOUT_S = 60


def _version(bin_dir: Path) -> tuple[int, ...]:
    """``(15,)`` for ``/usr/lib/postgresql/15/bin``, ``(9, 6)`` for ``.../9.6/bin``."""
    return tuple(int(part) for part in bin_dir.parent.name.split(".") if part.isdigit())


def find_bin_dir() -> Path:
    """The folder holding ``initdb`` and ``postgres``; fails the test run when there is none."""
    on_path = shutil.which("initdb")
    candidates = [Path(on_path).parent] if on_path else []
    installed = [Path(folder) for folder in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates += sorted(installed, key=_version, reverse=True)
    for folder in candidates:
        if all(os.access(folder / program, os.X_OK) for program in PROGRAMS):
            return folder
    pytest.fail(INSTALL, pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _account() -> dict:
    """``subprocess`` arguments running a program as :data:`RUN_AS` when we are root, else none."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; :meth:`start`, then :meth:`stop`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="localai-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "server.log"
        self.password = secrets.token_hex(12)
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._as = _account()

    def _run(self, *args: str) -> None:
        done = subprocess.run([str(self.bin_dir / args[0]), *args[1:]], cwd=self.root, capture_output=True,
                              text=True, timeout=120, **self._as)
        if done.returncode:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def start(self) -> PostgresServer:
        self.sockets.mkdir()
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self._as:
            for path in (self.root, self.sockets, password_file):
                os.chown(path, self._as["user"], self._as["group"])
        self._run("initdb", "--pgdata", str(self.data), "--username", SUPERUSER, "--pwfile", str(password_file),
                  "--auth-local", "trust", "--auth-host", "scram-sha-256", "--encoding", "UTF8", "--locale", "C",
                  "--no-sync")
        password_file.unlink()
        for _ in range(3):  # another program may take the free port before the server binds it
            if self._launch():
                return self
        raise RuntimeError(f"PostgreSQL did not start; its log:\n{self.log.read_text()}")

    def _launch(self) -> bool:
        """Start the server on a free port; whether it answers (``False``: it stopped at once)."""
        self.port = _free_port()
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(self.sockets),
                    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200"}
        options = [item for name, value in settings.items() for item in ("-c", f"{name}={value}")]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen([str(self.bin_dir / "postgres"), "-D", str(self.data), *options],
                                            cwd=self.root, stdout=log, stderr=subprocess.STDOUT, **self._as)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with self.connect():
                    return True
            except psycopg.OperationalError:
                if self.process.poll() is not None:
                    return False
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not answer; its log:\n{self.log.read_text()}") from None
                time.sleep(0.05)

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        return f"{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        """A psycopg connection in autocommit mode (for ``CREATE DATABASE`` and peeking at tables)."""
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                               dbname=database, autocommit=True, connect_timeout=5)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex}"
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def stop(self) -> None:
        """An immediate shutdown (SIGQUIT; SIGKILL after 10 s), then the directory goes."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGQUIT)
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        finally:
            shutil.rmtree(self.root)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (the test fails if PostgreSQL is not installed)."""
    server = PostgresServer(find_bin_dir())
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL (``postgresql://``, with the password) of a database of this test's own."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)
