"""What the job runner needs of the device's client (:class:`JobTransport`) and what the agent gives it
(:class:`JobHooks`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.diagnostics import LogRing
from firmware.transport import Reply
from wardsight import wire
from wardsight.device_config import DEFAULT_REBOOT_COMMAND, DeviceConfig
from wardsight.fetch import ArtifactStore


class JobTransport(Protocol):
    """What the runner needs of :class:`firmware.transport.FleetClient`."""

    device_id: str

    @property
    def clock_offset(self) -> float | None: ...

    def server_now(self) -> float: ...

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str | None = None,
        *,
        query: str = "",
        timeout: float | None = None,
    ) -> Reply: ...

    def request_bound(
        self, method: str, path: str, make_body: Callable[[str], bytes], content_type: str | None
    ) -> Reply: ...

    def adopt_key(self, key: Ed25519PrivateKey, reply: Reply) -> None: ...


@dataclass(frozen=True)
class SelfTestOutcome:
    ok: bool
    reason: str
    detail: str


@dataclass
class JobHooks:
    """What the agent gives the runner: where its configuration lives and how to stop it."""

    config_path: Path  # the device.toml the agent loads (pushed configurations replace it)
    stop_agent: Callable[[int], None]  # stop the agent; the process then exits with this status
    environ: Mapping[str, str] = field(default_factory=dict)  # for WARDSIGHT_DEVICE_* overrides
    store: ArtifactStore | None = None  # model files a configuration needs must be present here
    config: DeviceConfig | None = None  # the running configuration (diagnostics)
    health: Callable[[], wire.Health] | None = None  # a current heartbeat report (diagnostics)
    pending_events: Callable[[], int] | None = None  # events not yet sent (drained before a key rotation)
    self_test: Callable[[], SelfTestOutcome] | None = None
    reboot_command: Sequence[str] = DEFAULT_REBOOT_COMMAND
    log_ring: LogRing | None = None
    update_waiting: Callable[[], None] | None = None  # the server says an update offer waits (wake the OTA loop)
