"""Backends by name, each with an availability probe that says why it cannot run here.

Each backend module calls :func:`register` at import. Modules whose SDK is missing still import (they
import the SDK lazily), so every backend can always say *why* it is unavailable: module missing, no
device found, wrong architecture. ``auto`` picks the first available backend in :data:`PREFERENCE` and
logs the choice; the CPU is always available and is the fallback.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accelerators.base import Backend
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.accelerators")

PREFERENCE = ("hailo", "coral", "imx500", "cpu")
PLUGINS: tuple[str, ...] = (
    "accelerators.cpu_plugin",
    "accelerators.hailo",
    "accelerators.coral",
    "accelerators.imx500",
)


class BackendUnavailableError(WardSightError):
    """The requested backend cannot run on this machine; the message says why."""


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str  # why not, or what was found (e.g. "Hailo-8L at 0001:01:00.0")


@dataclass(frozen=True)
class BackendEntry:
    name: str
    probe: Callable[[], Availability]
    create: Callable[..., Backend]  # (**settings) -> Backend


_REGISTRY: dict[str, BackendEntry] = {}
_loaded = False


def register(entry: BackendEntry) -> None:
    _REGISTRY[entry.name] = entry


def _load_plugins() -> None:
    global _loaded
    _loaded = True
    for module in PLUGINS:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # a plugin of ours failing to import is a bug, but it must not stop the agent
            log.error("backend plugin %s failed to import: %s", module, exc)


def entries() -> dict[str, BackendEntry]:
    if not _loaded:
        _load_plugins()
    return dict(_REGISTRY)


def probe_all() -> dict[str, Availability]:
    return {name: entry.probe() for name, entry in entries().items()}


def choose(name: str) -> str:
    """The backend to use for ``name`` ("auto" or a backend name), or an error saying why it cannot run."""
    known = entries()
    if name == "auto":
        for candidate in PREFERENCE:
            if candidate in known:
                state = known[candidate].probe()
                if state.available:
                    log.info("accelerator: auto chose %s (%s)", candidate, state.reason)
                    return candidate
                log.info("accelerator: %s unavailable: %s", candidate, state.reason)
        raise BackendUnavailableError("no backend is available (not even the CPU)")
    if name not in known:
        raise BackendUnavailableError(f"unknown backend '{name}' (known: {', '.join(sorted(known))})")
    state = known[name].probe()
    if not state.available:
        raise BackendUnavailableError(f"backend '{name}' is unavailable: {state.reason}")
    return name


def create(name: str, **settings: Any) -> Backend:
    return entries()[choose(name)].create(**settings)
