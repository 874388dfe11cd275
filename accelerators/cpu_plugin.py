"""Registers the CPU backend (LiteRT, always available where ai-edge-litert imports)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from accelerators.base import Backend
from accelerators.registry import Availability, BackendEntry, register


def probe() -> Availability:
    if importlib.util.find_spec("ai_edge_litert") is None:
        return Availability(False, "ai-edge-litert is not installed (pip install ai-edge-litert)")
    return Availability(True, "LiteRT on the CPU")


def create(*, model_path: Path, num_threads: int = 2, min_score: float = 0.15, **_: Any) -> Backend:
    from accelerators.cpu import CpuPoseBackend

    return CpuPoseBackend(model_path, num_threads=num_threads, min_score=min_score)


register(BackendEntry("cpu", probe, create))
