"""Starting the agent again when it asks to be (exit 75), for runs without systemd (the demo, a laptop).

On a device systemd restarts the agent (``Restart=always``) when it exits with
:data:`firmware.exitcodes.RESTART_EXIT_CODE` to switch to a new model or after a maintenance job; a process that
runs the agent in-process (``wardsight demo``) uses :func:`run_supervised` to do the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from firmware.runtime import RunResult, run_device
from wardsight.device_config import DeviceConfig
from wardsight.fetch import ArtifactStore

log = logging.getLogger("wardsight.device")

RESTART_PAUSE_S = 0.5  # between one run and the next (systemd's RestartSec, shortened for the demo)


def run_supervised(
    config: DeviceConfig,
    data_dir: Path,
    *,
    duration: float | None = None,
    store: ArtifactStore | None = None,
    stop: threading.Event | None = None,
    echo: Callable[[str], None] = log.info,
    run: Callable[..., RunResult] = run_device,
) -> RunResult:
    """Run the agent until it ends for good (source ended, ``duration`` passed, ``stop`` set, a job such as a
    factory reset); each time it stops asking for a restart it is started again. Returns the last run."""
    deadline = time.monotonic() + duration if duration is not None else None
    stop = stop or threading.Event()
    while True:
        left = None if deadline is None else max(0.1, deadline - time.monotonic())
        result = run(config, data_dir, duration=left, store=store, stop=stop)
        over = stop.is_set() and result.restart is None
        if result.restart is None or over or (deadline is not None and time.monotonic() >= deadline):
            return result
        echo(f"the agent stopped to restart ({result.restart}); starting it again")
        stop.clear()  # the run set it to stop itself
        time.sleep(RESTART_PAUSE_S)
