"""One run of the enrolled agent: :class:`DeviceRuntime` wires what :mod:`firmware.assembly` builds (source,
model, apps) to the device's identity and its services (event sender, OTA, scene preview, heartbeat, jobs)."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerators.catalog import get_model
from firmware.agent import Agent, AgentStats, EventStamper
from firmware.apps.base import AppEvent
from firmware.assembly import (
    PoseModel,
    agent_readings,
    artifact_store,
    build_analyzers,
    build_apps,
    build_imx500,
    build_source,
    build_zones,
    device_dir,
    open_pose_model,
    privacy_mode,
)
from firmware.diagnostics import install_log_ring
from firmware.exitcodes import RESTART_EXIT_CODE
from firmware.heartbeat import HeartbeatLoop, build_health, read_system
from firmware.identity import IdentityStore, tls_context
from firmware.jobs.hooks import JobHooks, SelfTestOutcome
from firmware.jobs.runner import JobRunner
from firmware.ota import selftest
from firmware.ota.builds import target_of
from firmware.ota.channel import FleetChannel
from firmware.ota.download import TargetDownloader
from firmware.ota.health import FrameCounts, HealthCheck
from firmware.ota.manager import OtaManager, OtaSettings
from firmware.ota.rauc import Rauc
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice
from firmware.ota.system_client import (
    SystemAwareChannel,
    SystemClient,
    bundle_downloader,
    poll_offer,
    system_updates_available,
)
from firmware.ota.system_state import RebootKind, RebootRequester
from firmware.ota.system_update import SystemUpdater
from firmware.ota.tufclient import TufClient
from firmware.outbox import SqliteOutbox
from firmware.preview import PreviewSender, SceneTap
from firmware.rate import RecentRate
from firmware.sdnotify import Notifier
from firmware.sender import EventSender
from firmware.sources import FrameSource
from firmware.system_version import read_system_version
from wardsight import wire
from wardsight.device_config import DeviceConfig
from wardsight.fetch import ArtifactStore

log = logging.getLogger("wardsight.device")
# The image's unit for the one reboot that tries a new system slot (images/layer/wardsight-rauc.d; polkit lets the
# agent's user start it and wardsight-reboot.service, nothing else).
TRYBOOT_COMMAND = ("systemctl", "--no-block", "start", "wardsight-tryboot.service")


@dataclass
class RunResult:
    agent: AgentStats
    sent: int
    rejected: int
    queued: int
    frames_captured: int
    frames_dropped: int
    restart: str | None = None  # why the agent stopped to be started again (e.g. to switch to a new model)
    exit_code: int | None = None  # set by a job that ends the agent otherwise (factory reset: FACTORY_RESET_EXIT_CODE)


class DeviceRuntime:
    """The enrolled agent, built from ``config`` (everything that can fail on bad configuration or missing models
    fails in the constructor, before anything starts), then :meth:`start`-ed, :meth:`run` and :meth:`stop`-ped."""

    def __init__(
        self,
        config: DeviceConfig,
        data_dir: Path,
        *,
        stop: threading.Event | None = None,
        store: ArtifactStore | None = None,
        config_path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        reboot_command: Sequence[str] | None = None,
        notifier: Notifier | None = None,
        rauc: Rauc | None = None,
        system_reboot: RebootRequester | None = None,
    ) -> None:
        """``rauc``: the device's RAUC (default: ``rauc`` where it is installed and configured, else no system
        updates); ``system_reboot``: how a system update reboots (default: the reboot command)."""
        self.config, self.data_dir, self.dir = config, data_dir, device_dir(data_dir)
        self.config_path = config_path or data_dir / "device.toml"
        self.environ = environ or {}
        self.reboot_command = tuple(reboot_command or config.reboot_command)
        self.notifier = notifier or Notifier(self.environ)  # systemd's READY=1 / WATCHDOG=1; a no-op without it
        self.log_ring = install_log_ring()  # recent log lines for diagnostics jobs, from the start
        self.ids = IdentityStore(self.dir)
        self.identity, _ = self.ids.load()
        _, self.client = self.ids.client()
        self.store = store or artifact_store(data_dir, config)
        apps = build_apps(config)
        analyzers = build_analyzers(apps, self.store, config.threads, config.mask.face_every_frames)
        zones = build_zones(config)
        # The model this start runs: an OTA slot (a trial, the active one, the previous one) or the factory model.
        self.slots = SlotStore(self.dir / "models" / "slots")
        self.ota_dir = self.dir / "ota"
        self.ota_root = (self.ota_dir / "root.json").exists()
        self.pose, self.source = self._open_model()
        self.backend, self.choice = self.pose.backend, self.pose.choice
        # Signed with the client's key, which a rotate_key job replaces.
        client, ident = self.client, self.identity
        self.stamp = EventStamper(ident.device_id, ident.room, lambda ev: wire.sign_event(ev, client.key))
        self.outbox = SqliteOutbox(self.dir / "outbox.db")  # events survive outages and restarts
        self.sender = EventSender(self.identity.server_url, queue=self.outbox, post=client.post_event)
        self.tap = SceneTap(config.zones, config.privacy_regions)  # the zone editor's metadata view, when watched
        self.agent = Agent(self.source, self.backend, [*apps, self.tap], self._emit, zones=zones, analyzers=analyzers)
        model = get_model(config.model)
        self.model_name = self.choice.record.name if self.choice.record else model.name
        self.model_version = self.choice.version or model.version
        self.stop_event = stop or threading.Event()
        self.restart_reason: str | None = None
        self.exit_code: int | None = None
        self.started = time.monotonic()
        self.rate = RecentRate(self.started)  # the heartbeat's frame rate, over the last minute
        self.manager: OtaManager | None = None
        self.rauc = rauc if rauc is not None else Rauc() if system_updates_available() else None
        self.system_reboot = system_reboot or self._reboot
        self.system: SystemClient | None = None
        self.services: list[PreviewSender | HeartbeatLoop] = []
        self.jobs: JobRunner | None = None
        self.queued = 0

    def _open_model(self) -> tuple[PoseModel, FrameSource]:
        if self.config.source.kind == "imx500":  # the network runs in the sensor; no OTA slot applies
            backend, source = build_imx500(self.config)
            return PoseModel(backend, Choice(None), "imx500", "not_supported"), source
        pose = open_pose_model(self.config, self.store, self.slots, self.ota_root)
        return pose, build_source(self.config, self.store)

    # ---- start, run, stop ----------------------------------------------------------------------------

    def start(self) -> DeviceRuntime:
        """Start the services around the agent; the job runner last (after the build: a start that worked)."""
        self.sender.start()
        self.started = time.monotonic()
        self.rate = RecentRate(self.started)
        self.system = self._start_system()
        self.manager = self._start_ota()
        preview = PreviewSender(self.client, self.tap.snapshot).start()
        beats = HeartbeatLoop(self.client, self.health, self.config.heartbeat_seconds, on_reply=preview.observe)
        self.services = [beats.start(), preview]
        self.jobs = JobRunner(self.client, self.identity, self.dir, self._job_hooks()).start()
        source, mode = self.config.source.kind, privacy_mode(self.config)
        log.info("privacy mode: %s", mode)
        self.notifier.ready(
            f"running {self.model_name} {self.model_version} ({self.pose.kind}), source {source}, privacy {mode}"
        )
        return self

    def run(self, duration: float | None = None) -> RunResult:
        """Run the agent until the source ends, ``duration`` passes, ``stop`` is set or a job ends it; then stop."""
        deadline = self.started + duration if duration is not None else None
        try:
            stats = self.agent.run(self.stop_event, deadline, on_frame=self._alive)
        finally:
            self.stop()
        return RunResult(
            stats,
            self.sender.stats.sent,
            self.sender.stats.rejected,
            self.queued,
            self.source.stats.captured,
            self.source.stats.dropped,
            self.restart_reason,
            self.exit_code,
        )

    def stop(self) -> None:
        """Stop the services and close the source, model and outbox (events not sent go after the next start)."""
        self.notifier.stopping(self._stopping_status())
        if self.jobs is not None:
            self.jobs.close()
        if self.manager is not None:
            self.manager.stop()
        if self.system is not None:
            self.system.stop()
        for service in self.services:
            service.stop()
        self.source.close()
        self.backend.close()
        self.sender.stop()
        self.queued = self.sender.pending  # still in the outbox: sent after the next start
        self.outbox.close()
        self.notifier.close()

    def _alive(self) -> None:
        """After each frame of the loop: the watchdog ping (at most every half WatchdogSec) and a status line."""
        self.notifier.tick(self._status)

    def _status(self) -> str:
        stats = self.agent.stats
        return (
            f"{stats.processed} frames processed, {stats.failed} skipped, {stats.events} events, "
            f"{self.sender.pending} unsent"
        )

    def _stopping_status(self) -> str:
        if self.restart_reason is not None:
            return f"stopping to restart: {self.restart_reason}"
        if self.exit_code is not None:
            return f"stopping for good (exit {self.exit_code})"
        return "stopping"

    # ---- what the services call ----------------------------------------------------------------------

    def _emit(self, event: AppEvent) -> None:
        log.info("%s/%s %s", event.app, event.type, event.data)
        self.sender.submit(self.stamp(event))

    def request_restart(self, reason: str) -> None:
        """Stop the agent to be started again (the first reason asked for is the one reported)."""
        if self.restart_reason is None:
            self.restart_reason = reason
        self.stop_event.set()

    def _stop_for_job(self, code: int) -> None:
        if code == RESTART_EXIT_CODE:
            self.request_restart("maintenance job")
        else:
            if self.exit_code is None:
                self.exit_code = code
            self.stop_event.set()

    def _self_test(self) -> SelfTestOutcome:
        """The model this start runs (an OTA slot or the factory model)."""
        choice = self.choice
        if choice.record is None or choice.path is None:
            path, build = self.store.require(get_model(self.config.model).artifact), selftest.factory_build()
        else:
            path, build = choice.path, choice.record.build
        gates = self.config.updates
        result = selftest.run_selftest(path, build, timeout=gates.selftest_timeout,
                                       max_invoke_seconds=gates.max_invoke_seconds)  # fmt: skip
        return SelfTestOutcome(result.ok, result.reason, result.detail)

    def health(self) -> wire.Health:
        """A heartbeat report for now."""
        pending, started = self.sender.pending, self.started
        readings = agent_readings(
            self.agent,
            self.source,
            self.backend,
            pending,
            self.model_name,
            self.model_version,
            started,
            privacy_mode(self.config),
            self.rate,
        )
        uptime = time.monotonic() - started
        health = build_health(self.identity.device_id, readings, read_system(), uptime_s=uptime, sent_at=time.time())
        return health.model_copy(update={"updates": self.pose.updates})

    def _start_ota(self) -> OtaManager | None:
        if not (self.ota_root and self.pose.updates == "ready"):
            log.warning("model updates over the air are off on this device (%s)", self.pose.updates)
            return None
        context = tls_context(self.identity.server_url, self.ids.ca_pem())
        source, agent, client = self.source, self.agent, self.client
        channel = SystemAwareChannel(client, self.system) if self.system is not None else FleetChannel(client)
        return OtaManager(
            self.slots,
            channel,
            TufClient(self.ota_dir, self.identity.server_url, context, reference_time=client.server_now),
            TargetDownloader(self.ota_dir, context),
            running=self.choice,
            restart=self.request_restart,
            frames=lambda: FrameCounts(source.stats.captured, agent.stats.processed, agent.stats.failed),
            server_now=client.server_now,
            settings=self._ota_settings(backend=self.pose.kind, threads=self.config.threads),
            target=lambda: target_of(self.backend),  # after a fallback to the CPU: the CPU build
        ).start()

    def _ota_settings(self, **more: Any) -> OtaSettings:
        """The update loops' settings with this device's gates (device.toml ``[updates]``)."""
        g = self.config.updates
        return OtaSettings(health_frames=g.health_frames, health_seconds=g.health_seconds,
                           selftest_timeout=g.selftest_timeout, max_invoke_seconds=g.max_invoke_seconds, **more)

    def _frames(self) -> FrameCounts:
        return FrameCounts(self.source.stats.captured, self.agent.stats.processed, self.agent.stats.failed)

    def _start_system(self) -> SystemClient | None:
        """System updates (RAUC) beside the model updates; their offers come through the model manager's poll, or a
        poll of their own where model updates are off (e.g. the AI Camera's sensor runs the model)."""
        if self.rauc is None or not self.ota_root:
            log.info("system updates over the air are off on this device (%s)",
                     "no RAUC" if self.rauc is None else "no OTA root")  # fmt: skip
            return None
        s = self._ota_settings()
        check = HealthCheck(self._frames, need=s.health_frames, within=s.health_seconds, max_failed=s.health_max_failed)
        check.start()
        release = read_system_version
        updater = SystemUpdater(self.dir, self.rauc, reboot=self.system_reboot, self_test=self._self_test,
                                health=check.verdict, running_version=lambda: (v.version if (v := release()) else None))
        context, client = tls_context(self.identity.server_url, self.ids.ca_pem()), self.client
        models = self.pose.updates == "ready"
        return SystemClient(
            updater,
            FleetChannel(client),
            TufClient(self.ota_dir, self.identity.server_url, context, reference_time=client.server_now),
            bundle_downloader(self.dir, context),
            server_now=client.server_now,
            own_poll=None if models else lambda: poll_offer(client),
        ).start()

    def _reboot(self, kind: RebootKind) -> None:
        """A system update's reboot: into the slot RAUC just armed, once (the image's ``wardsight-tryboot.service``,
        whose backend reboots with ``0 tryboot`` only while that trial stands), or the reboot command's (normal)."""
        command = TRYBOOT_COMMAND if kind == "tryboot" else self.reboot_command
        log.warning("system update: rebooting (%s): %s", kind, " ".join(command))
        done = subprocess.run(list(command), stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the reboot command exited {done.returncode}: {done.stderr[-200:]!r}")

    def _job_hooks(self) -> JobHooks:
        return JobHooks(
            config_path=self.config_path,
            stop_agent=self._stop_for_job,
            environ=self.environ,
            store=self.store,
            config=self.config,
            health=self.health,
            pending_events=lambda: self.sender.pending,
            self_test=self._self_test,
            reboot_command=self.reboot_command,
            log_ring=self.log_ring,
            update_waiting=self.manager.wake if self.manager is not None else None,
        )


def run_device(
    config: DeviceConfig,
    data_dir: Path,
    *,
    duration: float | None = None,
    stop: threading.Event | None = None,
    store: ArtifactStore | None = None,
    config_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    reboot_command: Sequence[str] | None = None,
) -> RunResult:
    """Run the enrolled agent until the source ends, ``duration`` passes, ``stop`` is set or a job ends it."""
    runtime = DeviceRuntime(config, data_dir, stop=stop, store=store, config_path=config_path, environ=environ,
                            reboot_command=reboot_command)  # fmt: skip
    return runtime.start().run(duration)
