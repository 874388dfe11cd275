"""Device heartbeats: what the agent and its hardware are doing, sent on a timer. Numbers only, no pixels.

:func:`build_health` is pure (readings in, a :class:`wardsight.wire.Health` out); :func:`read_system` reads
``/proc``, ``/sys`` and the image's release file (paths injectable; :mod:`firmware.system_version`);
:class:`HeartbeatLoop` sends on a background thread and never lets a failure reach the agent.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from firmware import system_version
from firmware.transport import FleetClient, NotAuthorizedError, Reply, UnreachableError
from wardsight import __version__, wire

log = logging.getLogger("wardsight.device.heartbeat")


@dataclass(frozen=True)
class SystemReadings:
    cpu_temp_c: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    system: wire.SystemVersion | None = None  # the booted slot and the image's version (firmware.system_version)


def read_system(
    proc: Path = Path("/proc"), sys: Path = Path("/sys"), release: Path = system_version.RELEASE_FILE
) -> SystemReadings:
    """CPU temperature (thermal zone 0, as on a Raspberry Pi), memory, and the system image (the release file at
    ``release``, the slot from ``proc``'s kernel command line); None for what cannot be read."""
    temp = None
    with contextlib.suppress(OSError, ValueError):
        temp = int((sys / "class/thermal/thermal_zone0/temp").read_text().strip()) / 1000.0
    used = total = None
    try:
        fields = {}
        for line in (proc / "meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0]) / 1024.0  # kB -> MB
        total = fields["MemTotal"]
        used = total - fields.get("MemAvailable", fields.get("MemFree", 0.0))
    except (OSError, ValueError, KeyError, IndexError):
        pass
    return SystemReadings(temp, used, total, system_version.read_system_version(release, proc / "cmdline"))


_key = wire.data_key


def _ident(text: str) -> str:
    ident = re.sub(r"[^A-Za-z0-9_.:-]+", "-", text).strip("-")
    return ident[:64] if ident[:1].isalnum() else "unknown"


@dataclass(frozen=True)
class AgentReadings:
    frames_processed: int
    frames_dropped: int
    fps: float | None
    stage_ms: dict[str, float]
    accelerator: str  # the backend running now
    accelerator_configured: str | None  # set when the configured one was lost and the CPU took over
    accelerator_temp_c: float | None
    models: dict[str, str]
    outbox_pending: int
    warnings: tuple[str, ...] = ()
    # How images are kept private: "sensor-only" (the AI Camera's network runs in the sensor, no image reaches
    # the host) or "blackout-at-capture" (privacy regions zeroed in each frame before any other code sees it).
    privacy_mode: wire.PrivacyMode = "blackout-at-capture"


def build_health(
    device_id: str, agent: AgentReadings, system: SystemReadings, *, uptime_s: float, sent_at: float
) -> wire.Health:
    warnings = list(agent.warnings)
    if agent.accelerator_configured and agent.accelerator_configured != agent.accelerator:
        warnings.append("accelerator_fallback")
    return wire.Health(
        device_id=device_id,
        sent_at=max(0.0, sent_at),
        uptime_s=max(0.0, uptime_s),
        agent_version=__version__,
        accelerator=_ident(agent.accelerator),
        accelerator_configured=_ident(agent.accelerator_configured) if agent.accelerator_configured else None,
        cpu_temp_c=system.cpu_temp_c,
        accelerator_temp_c=agent.accelerator_temp_c,
        mem_used_mb=system.mem_used_mb,
        mem_total_mb=system.mem_total_mb,
        fps=agent.fps,
        frames_processed=agent.frames_processed,
        frames_dropped=agent.frames_dropped,
        outbox_pending=agent.outbox_pending,
        stage_ms={_key(k): round(v, 3) for k, v in list(agent.stage_ms.items())[:16]},
        models={_key(k): v for k, v in list(agent.models.items())[:8]},
        warnings=[_ident(w) for w in warnings[:16]],
        privacy_mode=agent.privacy_mode,
        system=system.system,
    )


class HeartbeatLoop:
    """Calls ``make_report`` and sends it every ``interval`` seconds until stopped."""

    def __init__(
        self,
        client: FleetClient,
        make_report: Callable[[], wire.Health],
        interval: float,
        *,
        on_reply: Callable[[Reply], None] | None = None,
    ) -> None:
        self._client, self._make, self._interval = client, make_report, interval
        self._on_reply = on_reply
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.sent = 0

    def start(self) -> HeartbeatLoop:
        self._thread.start()
        return self

    def beat(self) -> bool:
        try:
            reply = self._client.heartbeat(self._make())
        except (UnreachableError, NotAuthorizedError) as exc:
            log.warning("heartbeat not delivered: %s", exc)
            return False
        except Exception:  # a heartbeat must never take the agent down
            log.exception("heartbeat failed")
            return False
        if self._on_reply is not None:
            try:
                self._on_reply(reply)
            except Exception:  # e.g. the preview sender: never the heartbeat's problem
                log.exception("heartbeat reply handler failed")
        if reply.status != 200:
            log.warning("heartbeat refused (HTTP %d): %s", reply.status, reply.error)
            return False
        self.sent += 1
        return True

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
