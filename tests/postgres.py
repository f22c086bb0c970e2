"""A throwaway PostgreSQL server in a temporary folder, for the tests and the benchmarks (``benchmarks/``).

Like pytest-postgresql: ``initdb`` and ``pg_ctl`` from the installed PostgreSQL (Debian package
``postgresql``) create and start a server of its own on a free loopback port; stopping it deletes
everything. PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
user (or ``nobody``) through ``runuser`` or ``setpriv``, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["server_binaries", "ThrowawayPostgres", "PostgresUnavailable", "server_or_none"]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or the server would not start."""


def server_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``, or None if PostgreSQL is not installed."""
    candidates = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                      if Path(p).parent.name.isdigit() else 0, reverse=True)
    candidates += [Path(p) for p in versions]
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a postgres nor a nobody user exists")


class ThrowawayPostgres:
    """A PostgreSQL server for one test session or benchmark; ``url(db)`` gives an Optuna storage URL.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Connections use password
    authentication over TCP on 127.0.0.1, so URLs carry a (random) password as real ones do.
    """

    user = "codesign"

    def __init__(self, max_connections: int = 100) -> None:
        self.max_connections = max_connections  # PostgreSQL's default; each worker holds about 3
        self.bin = server_binaries()
        if self.bin is None:
            raise PostgresUnavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                                      "install them with: apt-get install postgresql")
        self.password = secrets.token_hex(8)
        self.port: int | None = None
        self.folder: Path | None = None
        self._prefix: list[str] = []

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        result = subprocess.run(self._prefix + list(command), capture_output=True, text=True)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{Path(command[0]).name} failed: {(result.stderr or result.stdout).strip()[-800:]}")
        return result

    def start(self) -> ThrowawayPostgres:
        self.folder = Path(tempfile.mkdtemp(prefix="codesign-pg-"))
        if os.geteuid() == 0:
            user = _unprivileged_user()
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            if shutil.which("runuser"):
                self._prefix = ["runuser", "-u", user.pw_name, "--"]
            elif shutil.which("setpriv"):
                self._prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
            else:
                raise PostgresUnavailable("running as root without runuser or setpriv to drop privileges")
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-U", self.user, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        for attempt in range(3):  # a free port can be taken by someone else before the server binds it
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                       f"-c max_connections={self.max_connections}")
            try:
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-l", str(self.folder / "log"),
                          "-w", "-t", "60", "-o", options, "start")
                return self
            except PostgresUnavailable:
                if attempt == 2:
                    log = self.folder / "log"
                    tail = log.read_text()[-800:] if log.exists() else ""
                    self.stop()
                    raise PostgresUnavailable(f"the PostgreSQL server did not start: {tail}") from None
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its storage URL."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                      dbname="postgres")
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def stop(self) -> None:
        if self.folder is None:
            return
        if (self.folder / "data" / "postmaster.pid").exists():
            subprocess.run(self._prefix + [str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate",
                                           "-w", "stop"], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None

    def __enter__(self) -> ThrowawayPostgres:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def server_or_none(skipped: dict[str, Any], key: str, **options: Any) -> Iterator[ThrowawayPostgres | None]:
    """A started server (``options`` as for :class:`ThrowawayPostgres`), stopped on the way out; None where
    none can start, with the reason in ``skipped[key]`` (a benchmark then measures the journal alone)."""
    try:
        server = ThrowawayPostgres(**options).start()
    except PostgresUnavailable as exc:
        skipped[key] = str(exc)
        yield None
        return
    try:
        yield server
    finally:
        server.stop()
