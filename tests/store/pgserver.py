"""A throwaway PostgreSQL server for tests and benchmarks: initdb + pg_ctl in a temp dir.

PostgreSQL refuses to run as root, so when we are root the data directory belongs to the
``postgres`` system user (from the distribution's package) and the server runs through
``runuser``. It listens on 127.0.0.1 at a free port, with its unix socket inside the temp dir
(never /var/run/postgresql), trusts local connections, and is stopped and deleted afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["PgServer", "find_bindir"]


def find_bindir() -> Path | None:
    """The server binaries (PostgreSQL 15 preferred), or None when PostgreSQL is not installed."""
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: p != "/usr/lib/postgresql/15/bin"):
        if (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """``with PgServer() as pg: url = pg.new_database()`` — one server, any number of fresh databases."""

    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        self.bindir = bindir
        self.durable = durable
        self.settings = dict(settings or {})
        self.port = 0
        self.base = Path(tempfile.mkdtemp(prefix="tunegate-pg-"))
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)

    def start(self) -> PgServer:
        data = self.base / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "tunegate", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        opts = [f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base} -c max_connections=60",
                "-c shared_buffers=32MB"]
        if not self.durable:  # tests kill clients, never the server: the server need not fsync
            opts.append("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        opts += [f"-c {k}={v}" for k, v in self.settings.items()]
        for _ in range(3):  # a port taken between probing and binding: try another
            self.port = _free_port()
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.base / "log"), "-w",
                          "-t", "60", "-o", f"-p {self.port} " + " ".join(opts), "start")
                return self
            except subprocess.CalledProcessError:
                continue
        raise RuntimeError("PostgreSQL did not start: " + (self.base / "log").read_text(errors="replace")[-2000:])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://tunegate@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """CREATE DATABASE with a fresh name; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            if self.port:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate", "-w",
                          "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
