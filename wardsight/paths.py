"""Where WardSight keeps its files: one data directory, never the working directory.

Resolution order: an explicit path, then ``$WARDSIGHT_DATA_DIR``, then ``$XDG_DATA_HOME/wardsight``,
then ``~/.local/share/wardsight``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

ENV_DATA_DIR = "WARDSIGHT_DATA_DIR"


def data_dir(explicit: Path | str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the absolute data directory (not created)."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser().resolve()
    if env.get(ENV_DATA_DIR):
        return Path(env[ENV_DATA_DIR]).expanduser().resolve()
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "wardsight").resolve()


def models_dir(root: Path) -> Path:
    return root / "models"


def fsync_dir(path: Path) -> None:
    """Make the directory's entries (a rename into it, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with a new file of ``mode`` (private, 0600, unless asked) holding ``data``.

    A crash leaves either the old or the new file, both complete. The bytes go to a fresh temporary file
    (``.NAME.*.tmp``, created 0600 by mkstemp, never a fixed or pre-existing name) in the same directory,
    which is synced, renamed over ``path``, and the directory synced: an old file's mode, a planted symlink
    or a concurrent writer cannot widen who reads it. Missing parent directories are created 0700.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
