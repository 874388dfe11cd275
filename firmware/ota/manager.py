"""The agent's OTA loop: poll the fleet for an offer, fetch and check the package, install, switch, confirm.

It runs on a thread beside the agent, which keeps running its current model the whole time:

1. ``GET /api/v1/device/update`` (204: nothing to do) gives an :class:`wardsight.wire.UpdateOffer`.
2. TUF (:mod:`firmware.ota.tufclient`) says which bytes the offer's target is; the package is downloaded,
   resuming a partial file (:mod:`firmware.ota.download`), and verified against the signed length and hashes.
3. The package's manifest must name the offered model and version, a ``pose`` task this agent version runs,
   and a build for the backend this device runs now (on a Hailo, for its chip and HailoRT version:
   :mod:`firmware.ota.builds`; a build for another chip or runtime is refused ``rejected``, never installed);
   that build is extracted into the inactive slot (:mod:`firmware.ota.slots`), self-tested in a separate process
   (:mod:`firmware.ota.selftest`), and only then recorded. A build that fails its self-test is never activated.
4. Inside the offer's window (by the server's clock) the slot is put on trial and the agent is asked to
   restart (``restart`` callback; the process exits with :data:`firmware.exitcodes.RESTART_EXIT_CODE` and its
   supervisor starts it again). The next start runs the trial slot (:func:`firmware.ota.boot.open_model`).
5. The health check (:mod:`firmware.ota.health`): ``health_frames`` frames processed within ``health_seconds``
   of the start, with at most ``health_max_failed`` failed inferences, confirms the slot; otherwise the slot is
   abandoned, the agent restarts into the previous model and the failure is reported. A trial that crashes the
   agent is abandoned by the start count in :class:`~firmware.ota.slots.SlotStore`.

An offer of the agent's built-in version (target ``wire.BUILTIN_TARGET``, no package) switches back to the factory
model (:mod:`firmware.ota.slotreports`): restart, ``activated`` on that start, ``healthy`` on the first round.

Progress goes back with ``POST /api/v1/device/update`` (:mod:`firmware.ota.channel`). Outcomes (failed,
activated, healthy, rolled_back) are queued in the slot state and resent until the server has them; progress
notes (downloading, downloaded, installed, deferred) are sent once; :mod:`firmware.ota.fitness` judges a package.
An offer is handled under the device's update lock as ``model``: while a system update holds it or is in flight
(:mod:`firmware.ota.system_update`) the offer is ``deferred`` with the reason. An offer that failed for a reason
that would repeat (self-test, bad package, crash, health) is not tried again. Network errors are retried after
``retry_seconds`` while the offer stands (a partial download resumes); metadata or hash failures ``max_attempts``
times, then reported ``failed`` (final for the device in the rollout: transient trouble is never reported so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from tuf.api.metadata import TargetFile

import wardsight
from accelerators.catalog import MOVENET_MULTIPOSE
from firmware.ota import selftest
from firmware.ota.builds import DeviceTarget, choose
from firmware.ota.channel import ChannelError, UpdateChannel
from firmware.ota.download import DownloadError, TargetDownloader
from firmware.ota.fitness import missing_build, unfit
from firmware.ota.health import FrameCounts, HealthCheck
from firmware.ota.settings import OtaSettings
from firmware.ota.slots import SlotStore
from firmware.ota.slotstate import Choice, Slot, report_for
from firmware.ota.system_state import busy_reason, update_lock
from firmware.ota.tufclient import TufClient, TufError
from firmware.transport import NotAuthorizedError, UnreachableError
from wardsight import modelpkg, wire

log = logging.getLogger("wardsight.device.ota")
# Failures that say nothing about the offer (the network, the card): retried while the offer stands (the
# rollout's timeout judges a device stuck). Others max_attempts times, then reported failed (final for the device).
NETWORK = frozenset({"tuf_unreachable", "download_failed", "download_incomplete", "storage_error"})

Observer = Callable[[str, int, int], None]  # (step, done, total): downloading, verifying, installing, switching


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
        target: Callable[[], DeviceTarget] | None = None,
    ) -> None:
        """``target`` says what the device runs at the moment an offer is judged (an accelerator that fell back
        to the CPU takes the CPU build); without it, the settings' backend, hardware and runtime version."""
        self.slots, self.channel, self.tuf, self.downloader, self.running = slots, channel, tuf, downloader, running
        self.settings = settings or OtaSettings()
        s = self.settings
        self.target = target or (lambda: DeviceTarget(s.backend, s.hardware, s.runtime_version))
        self.model_name, self.factory_version, self.agent_version = model_name, factory_version, agent_version
        self.server_now, self._restart_cb = server_now, restart
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
        if self.running.slot is None and self.slots.confirm_factory():  # started on it: healthy (see slotreports)
            log.info("back on the built-in model %s", self.factory_version)
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
        device_dir = self.slots.root.parent.parent  # <device dir>/models/slots
        with update_lock(device_dir, "model") as lock:
            if lock is None:
                self._note(offer, "deferred", busy_reason(device_dir, "model"))
                return "waiting"
            return self._handle(offer)

    def _handle(self, offer: wire.UpdateOffer) -> str:
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
        if offer.target == wire.BUILTIN_TARGET:
            return self._to_factory(offer)
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

    def _to_factory(self, offer: wire.UpdateOffer) -> str:
        """Back to the model built into the agent (nothing to fetch): restart into it, as for an activation."""
        if offer.version != self.factory_version:
            why = f"the built-in model is {self.factory_version}, not {offer.version}"
            return self._reject(offer, "builtin_version_unknown", why)
        if not self._in_window(offer):
            self._note(offer, "deferred", "outside_window")
            return "waiting"
        self.slots.to_factory(offer.rollout_id, offer.model, offer.version)
        log.info("switching back to the built-in model %s %s: restarting", offer.model, offer.version)
        self._observe("switching", 1, 1)
        self._request_restart("activate")
        return "activating"

    def _fetch_and_install(self, offer: wire.UpdateOffer) -> Slot | None:
        info, url = self.tuf.targetinfo(offer.target)
        missing = missing_build(info, self.target())
        if missing is not None:  # known from the signed metadata: nothing to download
            self._reject(offer, *missing)
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
            target = self.target()
            reason = unfit(offer, manifest, target, self.agent_version)
            if reason is not None:
                self.downloader.discard(info)
                self._reject(offer, reason[0], reason[1])
                return None
            build = choose(manifest.builds, target)
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
