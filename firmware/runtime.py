"""Wiring the agent from configuration: source, backend, apps, identity and sender."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from accelerators.catalog import get_model
from accelerators.cpu import CpuPoseBackend
from firmware.agent import Agent, AgentStats, EventStamper
from firmware.apps.base import App, AppEvent
from firmware.apps.bed_exit import BedExitApp, BedExitConfig
from firmware.apps.fall import FallApp, FallConfig
from firmware.apps.occupancy import OccupancyApp
from firmware.config import DeviceConfig
from firmware.identity import IdentityStore
from firmware.live import StreamSource
from firmware.privacy import PrivacyMask
from firmware.sender import EventSender
from firmware.sources import FrameSource, SourceError, VideoFileSource
from firmware.zones import Zone, ZoneMap
from wardsight import wire
from wardsight.errors import ConfigError
from wardsight.fetch import ArtifactStore
from wardsight.footage import DEMO_FOOTAGE
from wardsight.paths import models_dir

log = logging.getLogger("wardsight.device")


def device_dir(data_dir: Path) -> Path:
    return data_dir / "device"


def artifact_store(data_dir: Path, config: DeviceConfig) -> ArtifactStore:
    return ArtifactStore(models_dir(data_dir), mirrors=tuple(config.model_mirrors))


def build_source(config: DeviceConfig, store: ArtifactStore) -> FrameSource:
    privacy = PrivacyMask([r.polygon for r in config.privacy_regions])
    src = config.source
    if src.kind in ("camera", "stream"):
        # Live sources keep only the newest frame and reconnect with backoff when the camera or stream drops.
        target: str | int = src.camera_index if src.kind == "camera" else (src.url or "")
        if src.kind == "stream" and not src.url:
            raise SourceError("source.kind = stream needs source.url")
        return StreamSource(target, privacy=privacy, stall_timeout=src.stall_seconds, max_wait=1.0)
    if src.kind == "picamera":
        from firmware.picamera import Picamera2Source

        return Picamera2Source(src.camera_index, size=src.size, fps=src.fps, privacy=privacy)
    path = src.path if src.path is not None else store.require(DEMO_FOOTAGE)
    return VideoFileSource(path, realtime=src.realtime, loop=src.loop, privacy=privacy)


def build_zones(config: DeviceConfig) -> ZoneMap:
    return ZoneMap(
        [Zone(z.name, z.kind, tuple(z.polygon), tuple(z.keypoints), z.min_keypoints, z.min_score) for z in config.zones]
    )


def build_apps(config: DeviceConfig) -> list[App]:
    """The apps this room's configuration enables, with their thresholds."""
    apps: list[App] = [
        OccupancyApp(stable_seconds=config.occupancy.stable_seconds, min_score=config.occupancy.min_score)
    ]
    beds = [z for z in config.zones if z.kind == "bed"]
    if config.fall.enabled:
        settings = config.fall.model_dump(exclude={"enabled"})
        apps.append(FallApp(FallConfig(**settings, bed_zones=frozenset(z.name for z in beds))))
    if config.bed_exit.enabled:
        wanted = config.bed_exit.bed_zone
        bed = next((z for z in beds if wanted is None or z.name == wanted), None)
        if bed is None:
            raise ConfigError(
                "bed_exit is enabled but no zone of kind 'bed'" + (f" named '{wanted}'" if wanted else "")
            )
        apps.append(BedExitApp(BedExitConfig(tuple(bed.polygon), memory_seconds=config.bed_exit.memory_seconds)))
    return apps


def build_backend(config: DeviceConfig, store: ArtifactStore) -> CpuPoseBackend:
    manifest = get_model(config.model)
    return CpuPoseBackend(
        store.require(manifest.artifact),
        manifest=manifest,
        num_threads=config.threads,
        min_score=config.min_person_score,
    )


@dataclass
class RunResult:
    agent: AgentStats
    sent: int
    rejected: int
    queued: int
    frames_captured: int
    frames_dropped: int


def run_device(
    config: DeviceConfig,
    data_dir: Path,
    *,
    duration: float | None = None,
    stop: threading.Event | None = None,
    store: ArtifactStore | None = None,
) -> RunResult:
    """Run the enrolled agent until the source ends, ``duration`` passes or ``stop`` is set."""
    identity, key = IdentityStore(device_dir(data_dir)).load()
    store = store or artifact_store(data_dir, config)
    backend = build_backend(config, store)
    source = build_source(config, store)
    stamp = EventStamper(identity.device_id, identity.room, lambda ev: wire.sign_event(ev, key))
    sender = EventSender(identity.server_url + "/api/v1/events").start()

    def emit(event: AppEvent) -> None:
        log.info("%s/%s %s", event.app, event.type, event.data)
        sender.submit(stamp(event))

    apps = build_apps(config)
    agent = Agent(source, backend, apps, emit, zones=build_zones(config))
    deadline = time.monotonic() + duration if duration is not None else None
    try:
        stats = agent.run(stop, deadline)
    finally:
        source.close()
        backend.close()
        sender.stop()
    return RunResult(
        stats, sender.stats.sent, sender.stats.rejected, sender.pending, source.stats.captured, source.stats.dropped
    )
