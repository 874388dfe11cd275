"""Local state: the root and targets versions these keys signed last (``ota-state.json`` in the keys
directory), so a server cannot make the hospital sign on top of rolled-back metadata."""

from __future__ import annotations

import json
from pathlib import Path

from signing.errors import OtaCliError
from wardsight.paths import write_file_atomically

STATE_FILE = "ota-state.json"


def read_state(keys: Path) -> dict[str, int]:
    """{"root_version": N, "targets_version": M} as far as recorded; empty before the first signature."""
    try:
        data = json.loads((keys / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OtaCliError(f"cannot read {keys / STATE_FILE}: {exc}") from None
    return {k: int(v) for k, v in data.items() if k in ("root_version", "targets_version")}


def save_state(keys: Path, **versions: int) -> None:
    """Record the versions just signed (``root_version=``, ``targets_version=``)."""
    state = read_state(keys)
    state.update(versions)
    write_file_atomically(keys / STATE_FILE, json.dumps(state, indent=2, sort_keys=True).encode())


def check_not_older(keys: Path, role: str, version: int) -> None:
    """Refuse to sign on top of ``role`` metadata older than what these keys signed last."""
    signed = read_state(keys).get(f"{role}_version")
    if signed is not None and version < signed:
        raise OtaCliError(
            f"the server offers {role} version {version} but these keys last signed version {signed}: "
            "its repository was rolled back or replaced; refusing to sign on top of it"
        )
