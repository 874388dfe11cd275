"""Assembling the agent from configuration: frame source, pose model and backend, apps, zones, extra analyzers,
and the readings a heartbeat reports. :class:`firmware.runtime.DeviceRuntime` wires these into a running agent."""

from __future__ import annotations

import logging
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from accelerators import registry
from accelerators.base import Backend
from accelerators.catalog import get_model
from accelerators.cpu import CpuPoseBackend
from accelerators.fallback import FallbackBackend
from firmware.agent import Agent
from firmware.apps.base import App
from firmware.apps.bed_exit import BedExitApp, BedExitConfig
from firmware.apps.fall import FallApp, FallConfig
from firmware.apps.hygiene import HandHygieneApp, HygieneConfig
from firmware.apps.mask import MaskApp, MaskConfig
from firmware.apps.occupancy import OccupancyApp, OccupancyAppConfig
from firmware.heartbeat import AgentReadings
from firmware.live import StreamSource
from firmware.ota.boot import open_model, open_on_accelerator, slot_backend
from firmware.ota.builds import DeviceTarget, target_of
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice
from firmware.perception import Analyzer
from firmware.privacy import PrivacyMask
from firmware.rate import RecentRate
from firmware.sources import FrameSource, SourceError, VideoFileSource
from firmware.zones import Zone, ZoneMap
from wardsight import wire
from wardsight.device_config import DeviceConfig
from wardsight.errors import ConfigError, WardSightError
from wardsight.fetch import ArtifactStore
from wardsight.footage import DEMO_FOOTAGE
from wardsight.paths import models_dir

if TYPE_CHECKING:
    from accelerators.mask_classifier import MaskClassifier

log = logging.getLogger("wardsight.device")


def device_dir(data_dir: Path) -> Path:
    return data_dir / "device"


def artifact_store(data_dir: Path, config: DeviceConfig) -> ArtifactStore:
    return ArtifactStore(models_dir(data_dir), mirrors=tuple(config.model_mirrors))


def build_imx500(config: DeviceConfig) -> tuple[Backend, FrameSource]:
    """The AI Camera: one device that is both the frame source and the person detector."""
    from accelerators import imx500
    from firmware.imx500_source import Imx500Source

    network = config.accelerator.imx500_network
    state = imx500.probe(network)
    if not state.available:  # no CPU fallback: without the AI Camera there is no camera either
        raise SourceError(f"source.kind = imx500: {state.reason}")
    privacy = PrivacyMask([r.polygon for r in config.privacy_regions])
    backend = imx500.create(
        network_file=network,
        size=config.source.size,
        privacy_mask=privacy.mask_for if privacy else None,
        host_frames=config.source.host_frames,
    )
    assert isinstance(backend, imx500.Imx500PersonBackend)
    if config.accelerator.kind not in ("auto", "cpu"):
        log.warning("source.kind = imx500 runs the network in the camera; accelerator.kind is ignored")
    return backend, Imx500Source(backend, privacy, fps=config.source.fps)


def build_source(config: DeviceConfig, store: ArtifactStore) -> FrameSource:
    privacy = PrivacyMask([r.polygon for r in config.privacy_regions])
    src = config.source
    if src.kind == "imx500":
        raise SourceError("source.kind = imx500 is both camera and detector: build it with build_imx500")
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


def privacy_mode(config: DeviceConfig) -> wire.PrivacyMode:
    """What the heartbeat says of this device: "sensor-only" (no image reaches the host) or "blackout-at-capture"."""
    return "sensor-only" if sensor_only(config) else "blackout-at-capture"


def sensor_only(config: DeviceConfig) -> bool:
    return config.source.kind == "imx500" and not config.source.host_frames


SENSOR_ONLY = "source.host_frames = false (sensor-only: no image reaches this computer)"


def build_apps(config: DeviceConfig) -> list[App]:
    """The apps this room's configuration enables, with their thresholds. In sensor-only mode the apps that need
    pixels on the host are refused, and hand hygiene judges the wrists' dwell at the dispenser alone."""
    if sensor_only(config) and config.mask.enabled:
        raise ConfigError(
            f"mask is enabled but {SENSOR_ONLY}: the mask app looks at faces in the image, which never arrives."
            " Turn [mask] off, or set host_frames = true (privacy regions are then blacked out at capture)."
        )
    hygiene = config.hand_hygiene
    if sensor_only(config) and hygiene.enabled and hygiene.use_hands and "use_hands" in hygiene.model_fields_set:
        raise ConfigError(
            f"hand_hygiene.use_hands = true but {SENSOR_ONLY}: rub detection finds hands in the image, which never"
            " arrives. Remove use_hands (hand hygiene then judges the wrists' dwell at the dispenser), or set"
            " host_frames = true."
        )
    occ = config.occupancy.model_dump()
    occ["zones"] = tuple(occ["zones"])
    apps: list[App] = [OccupancyApp(OccupancyAppConfig(**occ))]
    beds = [z for z in config.zones if z.kind == "bed"]
    if config.fall.enabled:
        settings = config.fall.model_dump(exclude={"enabled"})
        floors = frozenset(z.name for z in config.zones if z.kind == "floor")
        apps.append(FallApp(FallConfig(**settings, bed_zones=frozenset(z.name for z in beds), floor_zones=floors)))
    if config.bed_exit.enabled:
        wanted = config.bed_exit.bed_zone
        bed = next((z for z in beds if wanted is None or z.name == wanted), None)
        if bed is None:
            raise ConfigError(
                "bed_exit is enabled but no zone of kind 'bed'" + (f" named '{wanted}'" if wanted else "")
            )
        apps.append(BedExitApp(BedExitConfig(tuple(bed.polygon), memory_seconds=config.bed_exit.memory_seconds)))
    if config.hand_hygiene.enabled:
        h = config.hand_hygiene

        def names(given: list[str] | None, kind: str) -> frozenset[str]:
            chosen = frozenset(given if given is not None else (z.name for z in config.zones if z.kind == kind))
            if not chosen:
                raise ConfigError(f"hand_hygiene is enabled but there is no {kind} zone")
            return chosen

        apps.append(
            HandHygieneApp(
                HygieneConfig(
                    door_zones=names(h.door_zones, "door"),
                    dispenser_zones=names(h.dispenser_zones, "dispenser"),
                    patient_zones=names(h.patient_zones, "bed"),
                    rub_seconds=h.rub_seconds,
                    dispenser_dwell_seconds=h.dispenser_dwell_seconds,
                    lost_seconds=h.lost_seconds,
                    use_hands=h.use_hands and not sensor_only(config),
                    # Without hands on the host, rubbing cannot be judged: the dispenser dwell of the wrists decides.
                    require_rub=not sensor_only(config),
                )
            )
        )
    if config.mask.enabled:
        apps.append(MaskApp(MaskConfig(**config.mask.model_dump(exclude={"enabled", "face_every_frames"}))))
    return apps


def build_analyzers(apps: list[App], store: ArtifactStore, threads: int, face_every_frames: int = 1) -> list[Analyzer]:
    """The extra models the enabled apps need (their files must have been fetched)."""
    needed = set().union(*(a.needs for a in apps))
    analyzers: list[Analyzer] = []
    if "faces" in needed:
        from accelerators.facemask import FACEMASK_AIZOO
        from accelerators.faces import TwoStageMaskDetector
        from accelerators.mediapipe_models import FACE_FULL_RANGE
        from firmware.perception import FaceAnalyzer

        detector = TwoStageMaskDetector(
            store.require(FACE_FULL_RANGE),
            store.require(FACEMASK_AIZOO.artifact),
            threads,
            classifier=_mask_head(store, threads),
        )
        analyzers.append(FaceAnalyzer(detector, every_frames=face_every_frames))
    if "hands" in needed:
        from accelerators.hands import HandDetector
        from accelerators.mediapipe_models import HAND_LANDMARK, PALM_DETECTION
        from firmware.perception import HandAnalyzer

        analyzers.append(
            HandAnalyzer(HandDetector(store.require(PALM_DETECTION), store.require(HAND_LANDMARK), threads))
        )
    return analyzers


def _mask_head(store: ArtifactStore, threads: int) -> MaskClassifier | None:
    """The mask head once the face landmark model is on this device (the head itself ships beside the code); it
    makes every "no_mask" call (README: the figures). None, with a warning, when it cannot be used."""
    from accelerators.mask_classifier import FACE_LANDMARK, MASK_HEAD, MaskClassifier

    alone = "mask calls from AIZOO alone, whose no-mask calls are right about half the time"
    if not store.is_present(FACE_LANDMARK):
        log.warning("%s: face-landmark is missing or damaged (wardsight models fetch face-landmark)", alone)
        return None
    try:
        head = store.ensure(MASK_HEAD)  # (from the package beside the code: no network)
        classifier = MaskClassifier.from_files(head, store.path(FACE_LANDMARK), threads)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, WardSightError) as exc:
        log.warning("%s: the mask head cannot be used (%s)", alone, exc)
        return None
    log.info("mask calls from the mask head (%s)", MASK_HEAD.sha256[:12])
    return classifier


def build_cpu_backend(config: DeviceConfig, store: ArtifactStore) -> CpuPoseBackend:
    manifest = get_model(config.model)
    return CpuPoseBackend(
        store.require(manifest.artifact),
        manifest=manifest,
        num_threads=config.threads,
        min_score=config.min_person_score,
    )


def build_backend(config: DeviceConfig, store: ArtifactStore) -> Backend:
    """The configured accelerator with the CPU behind it, or the CPU when no accelerator can run (logged)."""
    return build_accelerator(config, store) or build_cpu_backend(config, store)


def build_accelerator(config: DeviceConfig, store: ArtifactStore) -> FallbackBackend | None:
    """The configured accelerator (``auto``: the first present with a model file) with the CPU behind it, or
    None when the CPU runs the pose model (``cpu``, or no accelerator can start; logged)."""
    acc = config.accelerator
    settings: dict[str, dict[str, object]] = {
        "hailo": {"hef_path": acc.hailo_hef, "min_score": config.min_person_score},
        "coral": {"model_path": acc.coral_model},
    }
    configured = {"hailo": acc.hailo_hef, "coral": acc.coral_model}
    if acc.kind == "cpu":
        return None
    candidates = [acc.kind] if acc.kind != "auto" else [n for n in ("hailo", "coral") if configured[n]]
    for name in candidates:
        if configured[name] is None:
            log.warning("accelerator %s selected but no model file is configured for it; using the CPU", name)
            continue
        try:
            primary = registry.create(name, **settings[name])
        except WardSightError as exc:
            log.warning("accelerator %s unavailable (%s); using the CPU", name, exc)
            continue
        log.info("accelerator: %s", name)
        return FallbackBackend(primary, lambda: build_cpu_backend(config, store))
    return None


@dataclass(frozen=True)
class PoseModel:
    """The pose model this start runs: its backend, the OTA slot it came from (``Choice(None)``: the factory or
    configured model), the backend kind update packages must have a build for, and whether updates apply."""

    backend: Backend
    choice: Choice
    kind: str
    updates: wire.UpdateCapability


def open_pose_model(config: DeviceConfig, store: ArtifactStore, slots: SlotStore, ota_root: bool) -> PoseModel:
    """Choose the backend actually running, then the model slot for it.

    The slots apply to the backend that starts (``firmware.ota.boot``): a trial is booted and health-checked,
    else the active slot, else the factory model (on the CPU the pinned MoveNet, on an accelerator its configured
    model). On an accelerator the configured model is opened first (it says which chip and runtime the device
    has); a slot that fits is then opened in its place, behind the CPU fallback. A trial for another backend is
    ended, reported.
    """
    readiness: wire.UpdateCapability = "ready" if ota_root else "no_ota_root"
    accelerator = build_accelerator(config, store)
    if accelerator is None:
        backend, choice = open_model(
            slots,
            lambda c: slot_backend(c, threads=config.threads, min_score=config.min_person_score),
            lambda: build_cpu_backend(config, store),
            DeviceTarget("cpu"),
        )
        return PoseModel(backend, choice, "cpu", readiness)
    settings = {"hailo": {"min_score": config.min_person_score}}.get(accelerator.primary.name, {})
    backend, choice = open_on_accelerator(
        slots,
        accelerator,
        lambda c: slot_backend(c, accelerator=settings, make_cpu=lambda: build_cpu_backend(config, store)),
        lambda: build_backend(config, store),
    )
    return PoseModel(backend, choice, target_of(backend).backend, readiness)


def agent_readings(
    agent: Agent,
    source: FrameSource,
    backend: Backend,
    pending: int,
    model: str,
    version: str,
    started: float,
    mode: wire.PrivacyMode = "blackout-at-capture",
    recent: RecentRate | None = None,
) -> AgentReadings:
    """What a heartbeat reports of the running agent; ``fps`` over the last minute with ``recent`` (the heartbeat
    loop's), else averaged since ``started``."""
    now = time.monotonic()
    processed = agent.stats.processed
    fps = recent.rate(now, processed) if recent else round(processed / max(1e-6, now - started), 2)
    configured = None
    accelerator, accel_temp = backend.name, None
    if isinstance(backend, FallbackBackend):
        accelerator = "cpu" if backend.fallback_reason else backend.primary.name
        configured = backend.primary.name
        primary_health = getattr(backend.active, "health", None)
        if backend.fallback_reason is None and callable(primary_health):
            try:
                accel_temp = primary_health().get("temperature_c")
            except Exception:  # health must never take the agent down
                log.debug("accelerator health failed", exc_info=True)
    return AgentReadings(
        frames_processed=processed,
        frames_dropped=source.stats.dropped,
        fps=fps,
        stage_ms=agent.stats.stages.mean_ms(),
        accelerator=accelerator,
        accelerator_configured=configured,
        accelerator_temp_c=accel_temp if isinstance(accel_temp, int | float) else None,
        models={model: version},
        outbox_pending=pending,
        privacy_mode=mode,
    )
