"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary directory, as a non-root user, on a free
port, listening on loopback and a private socket directory; stopped and deleted at the end of the session.

Nothing depends on a server already running. Each test gets its own schema (``search_path`` in the URL), so tests
never see each other's tables. Missing PostgreSQL binaries skip the tests that need them with one line, unless
``WARDSIGHT_REQUIRE_POSTGRES=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

START_TIMEOUT_S = 60


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def missing() -> str | None:
    """Why the cluster cannot start here (one line), or None."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if find_bin(tool) is None:
            return f"PostgreSQL is not installed ({tool} not found; Debian: apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgresql]')"
    if os.geteuid() == 0 and _unprivileged_user() is None:
        return "running as root and no unprivileged user (postgres or nobody) to run PostgreSQL as"
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One running PostgreSQL server for the session (``url`` names its ``postgres`` database)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wardsight-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "wardsight"
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = _unprivileged_user()
            assert account is not None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        self._start()
        self.url = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        self._schemas = 0

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, cwd=self.root, timeout=START_TIMEOUT_S)

    def _start(self) -> None:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        assert initdb and pg_ctl
        self._run(initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-instructions")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        self._run(pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")
        self._pg_ctl = pg_ctl

    def new_database_url(self) -> str:
        """A URL whose tables live in a schema of their own (created empty)."""
        import psycopg

        self._schemas += 1
        schema = f"t{os.getpid()}_{self._schemas}_{int(time.time() * 1000) % 100000}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")  # our generated name
        options = urllib.parse.quote(f"-csearch_path={schema}")
        return f"{self.url}?options={options}"

    def restart(self) -> None:
        """Stop the server at once (every session ends, as in a crash) and start it again on the same port."""
        self._run(self._pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        self._run(self._pg_ctl, "-D", str(self.data), "-l", str(self.root / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run(self._pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
