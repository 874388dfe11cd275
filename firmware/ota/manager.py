"""The agent's OTA loop: poll the fleet for an offer, fetch and check the package, install, switch, confirm.

It runs on a thread beside the agent, which keeps running its current model the whole time:

1. ``GET /api/v1/device/update`` (204: nothing to do) gives an :class:`wardsight.wire.UpdateOffer`.
2. TUF (:mod:`firmware.ota.tufclient`) says which bytes the offer's target is; the package is downloaded,
   resuming a partial file (:mod:`firmware.ota.download`), and verified against the signed length and hashes.
3. The package's manifest must name the offered model and version, a ``pose`` task this agent version runs,
   and a build for this device's backend; that build is extracted into the inactive slot
   (:mod:`firmware.ota.slots`), self-tested in a separate process (:mod:`firmware.ota.selftest`), and only
   then recorded. A build that fails its self-test is never activated.
4. Inside the offer's window (by the server's clock) the slot is put on trial and the agent is asked to
   restart (``restart`` callback; the process exits with :data:`RESTART_EXIT_CODE` and its supervisor starts
   it again). The next start runs the trial slot (:func:`open_model`).
5. The health check: ``health_frames`` frames processed within ``health_seconds`` of the start, with at most
   ``health_max_failed`` failed inferences, confirms the slot; otherwise the slot is abandoned, the agent
   restarts into the previous model and the failure is reported. A trial that crashes the agent is
   abandoned by the start count in :class:`~firmware.ota.slots.SlotStore`.

Progress goes back with ``POST /api/v1/device/update`` (:class:`wardsight.wire.UpdateReport`). Outcomes the
server must learn (failed, activated, healthy, rolled_back) are queued in the slot state and resent until the
server has them; progress notes (downloading, downloaded, installed, deferred) are sent once, best effort.
An offer that failed here for a reason that would repeat (self-test, bad package, crash, health) is not
tried again. Network errors are retried after ``retry_seconds`` for as long as the offer stands (a partial
download is resumed); metadata or hash failures are retried ``max_attempts`` times, then reported ``failed``
(the rollout takes a ``failed`` report as final for the device, so transient trouble is never reported so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import ValidationError
from tuf.api.metadata import TargetFile

import wardsight
from accelerators.catalog import MOVENET_MULTIPOSE
from accelerators.cpu import CpuPoseBackend
from firmware.ota import selftest
from firmware.ota.download import DownloadError, TargetDownloader
from firmware.ota.slots import Choice, Slot, SlotStore, report_for
from firmware.ota.tufclient import TufClient, TufError
from firmware.transport import FleetClient, NotAuthorizedError, UnreachableError
from wardsight import modelpkg, wire
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.ota")

RESTART_EXIT_CODE = 75  # "restart me": the agent exits with this to switch models; systemd Restart=always
UPDATE_PATH = wire.UPDATE_PATH
# Failures that say nothing about the offer (the network, the card): retried for as long as the offer stands
# (the rollout's in-progress timeout judges a device stuck). Others are retried max_attempts times, then
# reported as failed: the server takes "failed" as final for this device.
NETWORK = frozenset({"tuf_unreachable", "download_failed", "download_incomplete", "storage_error"})

Observer = Callable[[str, int, int], None]  # (step, done, total): downloading, verifying, installing, switching


@dataclass(frozen=True)
class OtaSettings:
    backend: str = "cpu"  # the build this device runs from a package
    hardware: str | None = None
    poll_seconds: float = 300.0  # the fallback: the jobs long poll wakes the manager when an offer waits
    retry_seconds: float = 60.0
    max_retry_seconds: float = 3600.0  # the same failure again and again backs off up to this
    max_attempts: int = 5  # tries of one offer that fail verification (not the network) before giving up
    health_frames: int = 30
    health_seconds: float = 120.0
    health_max_failed: int = 3
    selftest_timeout: float = 90.0
    max_invoke_seconds: float = 5.0
    threads: int = 1
    progress_seconds: float = 2.0  # how often a trial reports its health-check frames (best effort)


@dataclass(frozen=True)
class FrameCounts:
    """What the agent has done since it started (``source.stats.captured``, ``agent.stats.processed/failed``)."""

    captured: int
    processed: int
    failed: int


class UpdateChannel(Protocol):
    def poll(self) -> wire.UpdateOffer | None: ...

    def report(self, report: wire.UpdateReport) -> bool:
        """True when the server has taken the report (or refused it for good), False to keep it for later."""
        ...


class ChannelError(WardSightError):
    """The server's answer to an update request was not usable."""


class FleetChannel:
    """The update endpoints of the fleet server, through the device's authenticated client."""

    def __init__(self, client: FleetClient) -> None:
        self.client = client

    def poll(self) -> wire.UpdateOffer | None:
        reply = self.client.request("GET", UPDATE_PATH)
        if reply.status == 204:
            return None
        if reply.status != 200:
            raise ChannelError(f"update poll answered HTTP {reply.status}: {reply.error}")
        try:
            return wire.UpdateOffer.model_validate(reply.body)
        except ValidationError as exc:
            raise ChannelError(f"the server's update offer is malformed: {exc.error_count()} errors") from None

    def report(self, report: wire.UpdateReport) -> bool:
        body = report.model_dump_json(exclude_none=True).encode()
        try:
            reply = self.client.request("POST", UPDATE_PATH, body, "application/json")
        except (UnreachableError, NotAuthorizedError) as exc:
            log.info("update report kept for later: %s", exc)
            return False
        if 200 <= reply.status < 300:
            return True
        log.warning("the server refused the update report %s (HTTP %d): %s", report.state, reply.status, reply.error)
        return True  # a refusal would repeat: do not block the queue with it


class HealthCheck:
    """Did the model on trial work? ``frames`` gives the agent's counts; judged from when :meth:`start` ran."""

    def __init__(
        self,
        frames: Callable[[], FrameCounts],
        *,
        need: int,
        within: float,
        max_failed: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.frames, self.need, self.within, self.max_failed, self.clock = frames, need, within, max_failed, clock
        self._base = FrameCounts(0, 0, 0)
        self._t0 = clock()

    def start(self) -> None:
        self._base, self._t0 = self.frames(), self.clock()

    def progress(self) -> tuple[int, int]:
        """(frames processed since the start, frames needed)."""
        return max(0, self.frames().processed - self._base.processed), self.need

    def verdict(self) -> str | None:
        """``"ok"``, a failure reason (``inference_failed``, ``health_check_missed``), or None while undecided."""
        now = self.frames()
        processed = now.processed - self._base.processed
        failed = now.failed - self._base.failed
        captured = now.captured - self._base.captured
        if failed > self.max_failed:
            return "inference_failed"
        if processed >= self.need:
            return "ok"
        elapsed = self.clock() - self._t0
        if elapsed < self.within:
            return None
        if captured == 0 and elapsed < 10 * self.within:
            return None  # the camera gave nothing yet: not the model's fault; wait (a while) longer
        return "health_check_missed"


class OtaManager:
    """One device's OTA work. :meth:`step` does one round (tests drive it); :meth:`start` runs it on a thread."""

    def __init__(
        self,
        slots: SlotStore,
        channel: UpdateChannel,
        tuf: TufClient,
        downloader: TargetDownloader,
        *,
        running: Choice,
        restart: Callable[[str], None],
        frames: Callable[[], FrameCounts] | None = None,
        server_now: Callable[[], float] = time.time,
        settings: OtaSettings | None = None,
        model_name: str = MOVENET_MULTIPOSE.name,
        factory_version: str = MOVENET_MULTIPOSE.version,
        agent_version: str = wardsight.__version__,
        observer: Observer | None = None,
    ) -> None:
        self.slots, self.channel, self.tuf, self.downloader = slots, channel, tuf, downloader
        self.running = running
        self.settings = settings or OtaSettings()
        self.model_name, self.factory_version, self.agent_version = model_name, factory_version, agent_version
        self.server_now = server_now
        self._restart_cb = restart
        self._observer = observer
        self.restart_reason: str | None = None
        self.last_download: tuple[int, int] | None = None  # (resumed from, fetched) of the last download
        self._noted: set[tuple[str, str, str | None]] = set()  # progress notes sent once per offer
        self._attempts: dict[tuple[str, str], int] = {}  # failed verifications per (rollout, version)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None  # the last round's failure, to back off rather than repeat it
        self._repeats = 0
        self._progress_sent: tuple[int, float] | None = None  # (frames, when) of the last trial progress note
        self.health: HealthCheck | None = None
        if running.trial:
            if frames is None:
                raise ValueError("a model on trial needs the agent's frame counts for its health check")
            s = self.settings
            self.health = HealthCheck(
                frames, need=s.health_frames, within=s.health_seconds, max_failed=s.health_max_failed
            )
            self.health.start()

    # ---- the loop -------------------------------------------------------------------------------------

    def start(self) -> OtaManager:
        self._thread = threading.Thread(target=self.run, name="ota", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Check for an offer now (the server said one waits), not at the next poll."""
        self._wake.set()

    def run(self) -> None:
        while not self._stop.is_set() and self.restart_reason is None:
            try:
                status = self.step()
                self._last_error, self._repeats = None, 0
            except Exception as exc:  # the OTA loop must never take the agent down
                status = "error"
                self._note_error(exc)
            if self.restart_reason is not None:
                return
            if self.running.trial:
                wait = 0.5
            elif status in ("retry", "error"):
                wait = min(self.settings.max_retry_seconds, self.settings.retry_seconds * 2 ** min(self._repeats, 10))
            else:
                wait = self.settings.poll_seconds
            self._wake.wait(wait)
            self._wake.clear()

    def _note_error(self, exc: Exception) -> None:
        """Log a failed round once with its traceback; the same failure again only counts (and backs off)."""
        what = f"{type(exc).__name__}: {exc}"
        if what == self._last_error:
            self._repeats += 1
            log.warning("OTA round failed again (%d times in a row): %s", self._repeats + 1, what)
            return
        self._last_error, self._repeats = what, 0
        log.exception("OTA round failed")

    def step(self) -> str:
        """One round; returns what happened (idle, trial, confirmed, rolled_back, current, waiting, activating,
        rejected, failed, retry)."""
        self.flush()
        if self.restart_reason is not None:
            return "restarting"
        if self.running.trial:
            return self._check_trial()
        try:
            offer = self.channel.poll()
        except (UnreachableError, NotAuthorizedError, ChannelError) as exc:
            log.info("no update poll: %s", exc)
            return "retry"
        if offer is None:
            return "idle"
        return self.handle(offer)

    def flush(self) -> None:
        """Send the queued outcome reports, oldest first, until one cannot be delivered."""
        for report in self.slots.pending_reports():
            if not self.channel.report(report):
                return
            self.slots.ack(report)

    # ---- trial ------------------------------------------------------------------------------------------

    def _check_trial(self) -> str:
        assert self.health is not None and self.running.slot is not None
        verdict = self.health.verdict()
        if verdict is None:
            self._trial_progress()
            return "trial"
        if verdict == "ok":
            self.slots.confirm(self.running.slot)
            self.running = replace(self.running, trial=False)
            log.info("model %s passed its health check: it is now the active model", self.running.version)
            self.flush()
            return "confirmed"
        log.error("model %s failed its health check (%s): switching back", self.running.version, verdict)
        self.slots.fail_trial(verdict)
        self.flush()
        self._request_restart("rollback")
        return "rolled_back"

    def _trial_progress(self) -> None:
        """Tell the server how far the health check is (``activated``, frames done of needed), now and then."""
        assert self.health is not None and self.running.record is not None
        done, need = self.health.progress()
        now = time.monotonic()
        last = self._progress_sent
        if last is not None and (last[0] == done or now - last[1] < self.settings.progress_seconds):
            return
        self._progress_sent = (done, now)
        record, trial = self.running.record, self.slots.state.trial
        if trial is None:
            return
        self.channel.report(
            wire.UpdateReport(
                rollout_id=trial.rollout_id,
                model=record.name,
                version=record.version,
                state="activated",
                progress=round(min(1.0, done / max(1, need)), 3),
                done=done,
                total=need,
            )
        )

    # ---- an offer ---------------------------------------------------------------------------------------

    @property
    def running_version(self) -> str:
        return self.running.record.version if self.running.record else self.factory_version

    def handle(self, offer: wire.UpdateOffer) -> str:
        if self.slots.is_rejected(offer):
            return "rejected"
        if offer.model != self.model_name:
            return self._reject(offer, "unsupported_model", f"this device runs {self.model_name}, not {offer.model}")
        if offer.version == self.running_version:
            if self.slots.state.completed != offer.rollout_id:
                self.slots.mark_completed(offer)
                self.flush()
            return "current"
        trial = self.slots.state.trial
        if trial is not None:
            # A switch this process did not boot into (the agent chose another model, e.g. an accelerator
            # came up): end it once, reported, rather than try to begin it again.
            self.slots.fail_trial("not_booted")
            self.flush()
            log.error("model slot %s was on trial but this start does not run it: trial ended", trial.slot)
            return "rejected"
        slot = self.slots.installed(offer.version, offer.model)
        if slot is None:
            try:
                slot = self._fetch_and_install(offer)
            except (TufError, DownloadError) as exc:
                log.warning("update %s %s: %s", offer.model, offer.version, exc)
                if exc.code in NETWORK:
                    return "retry"
                key = (offer.rollout_id, offer.version)
                self._attempts[key] = self._attempts.get(key, 0) + 1
                if self._attempts[key] >= self.settings.max_attempts:
                    return self._reject(offer, exc.code, f"{self._attempts[key]} attempts: {exc}", "failed")
                return "retry"
            if slot is None:
                return "rejected"
        if not self._in_window(offer):
            self._note(offer, "deferred", "outside_window")
            return "waiting"
        self.slots.begin_trial(slot, offer.rollout_id)
        log.info("switching to model %s %s (slot %s) on trial: restarting", offer.model, offer.version, slot)
        self._observe("switching", 1, 1)
        self._request_restart("activate")
        return "activating"

    def _fetch_and_install(self, offer: wire.UpdateOffer) -> Slot | None:
        info, url = self.tuf.targetinfo(offer.target)
        missing = self._no_build(info)
        if missing is not None:  # known from the signed metadata: nothing to download
            self._reject(offer, "no_build_for_backend", missing)
            return None
        self.downloader.prune(keep=info)
        package = self.downloader.verified(info)
        if package is None:
            self._note(offer, "downloading")
            part, resumed_from, fetched = self.downloader.download(
                info, url, lambda done, total: self._observe("downloading", done, total)
            )
            self.last_download = (resumed_from, fetched)
            self._observe("verifying", 0, info.length)
            package = self.downloader.verify(info, part)
        self._note(offer, "downloaded")
        slot = self._install(offer, info, package)
        if slot is not None:
            self._note(offer, "installed")
        return slot

    def _install(self, offer: wire.UpdateOffer, info: TargetFile, package: Path) -> Slot | None:
        try:
            manifest = modelpkg.read_manifest(package)
            reason = self._unfit(offer, manifest)
            if reason is not None:
                self.downloader.discard(info)
                self._reject(offer, reason[0], reason[1])
                return None
            build = manifest.build_for(self.settings.backend, self.settings.hardware)
        except modelpkg.PackageError as exc:
            self.downloader.discard(info)
            self._reject(offer, "package_invalid", str(exc))
            return None
        slot = self.slots.install_target()
        self._observe("installing", 0, 2)
        self.slots.prepare(slot)
        try:
            model = self.slots.write(slot, package, manifest, build)
        except modelpkg.PackageError as exc:
            self.downloader.discard(info)
            self._reject(offer, "package_invalid", str(exc))
            return None
        self._observe("installing", 1, 2)
        s = self.settings
        result = selftest.run_selftest(
            model, build, timeout=s.selftest_timeout, threads=s.threads, max_invoke_seconds=s.max_invoke_seconds
        )
        if not result.ok:
            self.slots.prepare(slot)  # empty it again: a model that failed is not kept
            self.downloader.discard(info)
            self._reject(offer, "self_test_failed", f"{result.reason}: {result.detail}")
            return None
        log.info("model %s %s passed its self-test in slot %s (%s)", offer.model, offer.version, slot, result.detail)
        self.slots.commit(slot, manifest, build, offer.rollout_id)
        self._observe("installing", 2, 2)
        self.downloader.discard(info)  # the package is not needed once its build is installed
        return slot

    def _no_build(self, info: TargetFile) -> str | None:
        """Why the signed target (its ``custom`` list of builds, when it has one) has nothing for this device."""
        custom = info.unrecognized_fields.get("custom")
        builds = custom.get("builds") if isinstance(custom, dict) else None
        if not isinstance(builds, list):
            return None  # not described: the package's own manifest decides after the download
        backend, hardware = self.settings.backend, self.settings.hardware
        for build in builds:
            if (
                isinstance(build, dict)
                and build.get("backend") == backend
                and build.get("hardware") in (None, hardware)
            ):
                return None
        return self._backend_text()

    def _backend_text(self) -> str:
        runs = self.settings.backend + (f"/{self.settings.hardware}" if self.settings.hardware else "")
        return f"this device runs {runs}; the package has no build for it"

    def _unfit(self, offer: wire.UpdateOffer, manifest: modelpkg.Manifest) -> tuple[str, str] | None:
        """Why this package cannot serve this offer on this agent (reason code, detail), or None."""
        if manifest.name != offer.model or manifest.version != offer.version:
            return "package_mismatch", f"the package is {manifest.name} {manifest.version}"
        try:
            manifest.build_for(self.settings.backend, self.settings.hardware)
        except modelpkg.PackageError:
            return "no_build_for_backend", self._backend_text()
        if manifest.task != "pose":
            return "unsupported_model", f"task {manifest.task} is not served by the model slots"
        if modelpkg.version_key(manifest.min_agent_version) > modelpkg.version_key(self.agent_version):
            return "agent_too_old", f"needs agent {manifest.min_agent_version}, this is {self.agent_version}"
        return None

    def _in_window(self, offer: wire.UpdateOffer) -> bool:
        now = self.server_now()
        if offer.window_start is not None and now < offer.window_start:
            return False
        return offer.window_end is None or now < offer.window_end

    # ---- helpers ----------------------------------------------------------------------------------------

    def _reject(
        self, offer: wire.UpdateOffer, reason: str, detail: str, state: wire.UpdateState = "rejected"
    ) -> str:
        """Never try ``offer`` again here; report it ``rejected`` (the package was refused before it ran) or
        ``failed`` (it could not be fetched and verified)."""
        log.error("update %s %s refused: %s (%s)", offer.model, offer.version, reason, detail)
        self.slots.reject(offer, state, reason)
        self.flush()
        return "rejected"

    def _note(self, offer: wire.UpdateOffer, state: wire.UpdateState, reason: str | None = None) -> None:
        key = (offer.rollout_id + "/" + offer.version, state, reason)
        if key in self._noted:
            return
        self._noted.add(key)
        self.channel.report(report_for(offer, state, reason))

    def _observe(self, step: str, done: int, total: int) -> None:
        if self._observer is not None:
            self._observer(step, done, total)

    def _request_restart(self, reason: str) -> None:
        self.restart_reason = reason
        self._stop.set()
        self._restart_cb(reason)


# ---- starting the agent's model ------------------------------------------------------------------------

B = TypeVar("B")


def open_model(slots: SlotStore, open_slot: Callable[[Choice], B], open_factory: Callable[[], B]) -> tuple[B, Choice]:
    """The model this start runs (:meth:`SlotStore.boot`), opened; a slot that fails to load is abandoned
    (a trial is reported as rolled back) and the next one tried, down to the factory model."""
    choice = slots.boot()
    while choice.slot is not None:
        try:
            return open_slot(choice), choice
        except WardSightError as exc:  # ModelLoadError and the like
            log.error("model in slot %s failed to load: %s", choice.slot, exc)
            choice = slots.abandon(choice, "load_failed")
    return open_factory(), choice


def slot_backend(choice: Choice, *, threads: int = 2, min_score: float = 0.15) -> CpuPoseBackend:
    """The CPU backend for a slot's build (``open_slot`` for :func:`open_model` on a CPU device)."""
    if choice.record is None or choice.path is None:
        raise WardSightError("the factory model has no slot")
    record = choice.record
    manifest = selftest.pose_manifest(record.build, record.name, record.version)
    return CpuPoseBackend(choice.path, manifest=manifest, num_threads=threads, min_score=min_score)
