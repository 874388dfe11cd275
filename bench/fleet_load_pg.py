"""The PostgreSQL server of ``bench/fleet_load.py --database postgresql``: a throwaway cluster of its own.

``initdb`` in a fresh directory next to the bench's data directory (so ``--data-dir`` picks the disk for both
databases), run as an unprivileged user when the bench runs as root, on a free loopback port, with one database
for the fleet server; stopped and deleted at the end. Unlike the test cluster (``tests/pgcluster.py``, whose
binary lookup is reused) it keeps PostgreSQL's durable defaults (``fsync``, ``synchronous_commit``): a commit
waits for its WAL on disk, as the SQLite runs wait for theirs (``synchronous = FULL``). ``--pg-setting
fsync=off`` shows the CPU-bound ceiling instead, as ``--data-dir /dev/shm`` does for SQLite.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.pgcluster import find_bin, missing

DATABASE = "fleet_load"
USER = "wardsight"
TIMEOUT_S = 120
SETTING = re.compile(r"^[a-z_][a-z0-9_.]*=.*$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unprivileged() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise SystemExit("running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as")


def _conf_line(setting: str) -> str:
    name, value = setting.split("=", 1)
    return f"{name} = '{value.replace(chr(39), chr(39) * 2)}'\n"


class BenchCluster:
    """A running PostgreSQL server with an empty database ``url`` names; ``postmaster_pid`` for its CPU time."""

    def __init__(self, parent: Path | None, settings: list[str], max_connections: int = 200) -> None:
        why = missing()
        if why is not None:
            raise SystemExit(f"--database postgresql: {why}")
        for setting in settings:
            if not SETTING.match(setting):
                raise SystemExit(f"--pg-setting {setting!r}: expected name=value")
        self.root = Path(tempfile.mkdtemp(prefix="wardsight-fleet-load-pg-", dir=parent))
        self.data = self.root / "data"
        self.port = _free_port()
        self.settings = list(settings)
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = _unprivileged()
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        self._pg_ctl = find_bin("pg_ctl") or "pg_ctl"
        try:
            self._start(max_connections)
            self._create_database()
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str) -> None:
        try:
            subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root, timeout=TIMEOUT_S)
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or b"").decode(errors="replace")[-2000:]
            raise SystemExit(f"{Path(args[0]).name} failed:\n{detail}\n{self.log_tail()}") from None

    def _start(self, max_connections: int) -> None:
        initdb = find_bin("initdb") or "initdb"
        self._run(initdb, "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-instructions")
        lines = [
            f"port = {self.port}",
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.root}'",
            f"max_connections = {max_connections}",
        ]
        with (self.data / "postgresql.conf").open("a") as conf:  # later lines win: the bench's, then --pg-setting
            conf.write("\n# bench/fleet_load.py\n" + "".join(line + "\n" for line in lines))
            conf.write("".join(_conf_line(s) for s in self.settings))
        self._run(self._pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", str(TIMEOUT_S), "start")

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://{USER}@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")  # our constant name

    def postmaster_pid(self) -> int:
        """The server's main process (every backend, WAL writer, checkpointer ... is its child)."""
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def server_version(self) -> str:
        import psycopg

        with psycopg.connect(self.url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def log_tail(self, chars: int = 2000) -> str:
        log = self.root / "log"
        return log.read_text(errors="replace")[-chars:] if log.is_file() else ""

    def stop(self, keep: bool = False) -> None:
        """Stop the server; delete its directory unless ``keep`` (its ``log`` and data stay for a look)."""
        if (self.data / "postmaster.pid").is_file():
            with contextlib.suppress(subprocess.SubprocessError, OSError, SystemExit):
                self._run(self._pg_ctl, "-D", str(self.data), "-m", "fast", "stop")
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)
