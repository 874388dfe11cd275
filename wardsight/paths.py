"""Where WardSight keeps its files: one data directory, never the working directory.

Resolution order: an explicit path, then ``$WARDSIGHT_DATA_DIR``, then ``$XDG_DATA_HOME/wardsight``,
then ``~/.local/share/wardsight``.
"""

from __future__ import annotations

import os
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


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by the owner."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
