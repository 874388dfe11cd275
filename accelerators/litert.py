"""Loading a LiteRT model with a fixed float32 image input, shared by the fixed-input detectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wardsight.errors import WardSightError


class ModelLoadError(WardSightError):
    """A model file could not be loaded by the runtime (truncated, corrupt, wrong format)."""


def load_interpreter(path: Path, num_threads: int, size: int, what: str) -> tuple[Any, int]:
    """An allocated interpreter for a model taking [1, size, size, 3] float32, and its input index.

    Raises:
        ModelLoadError: the file does not load, or its input is not of that shape and type (``what`` names
            the model expected, for the message).
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load model {path}: {exc}") from None
    inp = interp.get_input_details()[0]
    if tuple(inp["shape"]) != (1, size, size, 3) or inp["dtype"] != np.float32:
        raise ModelLoadError(f"{path} is not {what}: input {list(inp['shape'])} {np.dtype(inp['dtype']).name}")
    return interp, int(inp["index"])


def outputs_by_shape(interp: Any) -> dict[tuple[int, ...], list[int]]:
    """Output tensor indices grouped by shape, each group ordered by tensor name (outputs are found by shape,
    never by position, which converters do not keep stable)."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for d in sorted(interp.get_output_details(), key=lambda d: d["name"]):
        by_shape.setdefault(tuple(int(v) for v in d["shape"]), []).append(int(d["index"]))
    return by_shape
