"""System updates on the device: a RAUC bundle installed into the inactive slot, tried once, kept only if healthy.

The caller (the agent's update loop) found the offer, fetched the bundle with resume
(:class:`firmware.ota.download.TargetDownloader`) and verified it against its signed TUF length and hashes
(:class:`firmware.ota.tufclient.TufClient`). From there, :class:`SystemUpdater` (state and decisions in
:mod:`firmware.ota.system_state`, RAUC through :mod:`firmware.ota.rauc`):

1. :meth:`~SystemUpdater.stage` records the verified bundle (``downloaded``).
2. ``rauc info`` checks RAUC's own signature against its keyring and reads the manifest: the compatible must be
   this system's (``rauc status``) and the one TUF signed, the version the one TUF signed and newer than the
   running one (older only for an explicit rollback); otherwise ``rejected`` with the reason.
3. ``rauc install`` writes the inactive slot and makes it the one the next boot *tries* (``installed``); the
   reboot is requested (``"tryboot"``, ``rebooting``), this boot's id recorded first: a later start tells a
   reboot from an agent restart by it.
4. On the new slot (``trial``): the agent's self-test, then its health check; both pass -> ``rauc status
   mark-good booted`` -> ``healthy``. A failure, or an agent that keeps restarting -> ``mark-bad booted`` and a
   normal reboot into the previous slot -> ``rolled_back`` with the reason (``self_test_failed: ...``). Should
   that reboot come back to the new slot (committed: a mark-good had landed), the previous slot is made primary
   again, tried and marked good (:meth:`~SystemUpdater._revert_again`).
5. Back on the old slot before a trial ended (the new slot did not come up, the watchdog reset the board, power
   was lost: the Pi's tryboot is one-shot) -> the new slot is tried once more, then ``rolled_back``
   (``new_slot_did_not_boot``).

A model update and a system update never run at the same time: both take :func:`update_lock`.
Each :meth:`~SystemUpdater.step` does what the state allows and returns the reports it made; outcome reports
stay queued in the state file until :meth:`~SystemUpdater.ack`. One thread drives an updater.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from firmware.ota.rauc import Rauc, RaucError, RaucStatus
from firmware.ota.system_state import (
    Failed,
    Move,
    Outcome,
    RebootKind,
    RebootRequester,
    ReportState,
    SlotRef,
    SystemOffer,
    SystemReport,
    SystemState,
    SystemStateStore,
    SystemUpdateSettings,
    UpdateLock,
    busy_reason,
    deferral,
    ending,
    judge,
    pending_reason,
    queue,
    read_boot_id,
    reboot_kind,
    retry,
    system_dir,
    update_lock,
    where_now,
)
from wardsight.sysversion import version_key

__all__ = ["SystemUpdater", "UpdateLock", "busy_reason", "pending_reason", "update_lock"]

log = logging.getLogger("wardsight.device.ota")

BEFORE_REBOOT = frozenset({"downloaded", "checked", "installing", "installed"})


# ---- the updater ----------------------------------------------------------------------------------------------


class SystemUpdater:
    """One device's system update. Creating one is an agent start: a start inside a trial boot is counted."""

    def __init__(
        self,
        device_dir: Path,
        rauc: Rauc,
        *,
        reboot: RebootRequester,
        self_test: Callable[[], Outcome],
        health: Callable[[], str | None],
        boot_id: Callable[[], str] = read_boot_id,
        running_version: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        settings: SystemUpdateSettings | None = None,
    ) -> None:
        """``health`` is the trial's health check: ``"ok"``, a failure reason, or None while undecided (e.g.
        :meth:`firmware.ota.health.HealthCheck.verdict`, started with the agent). ``running_version`` says which
        system version runs when RAUC does not know (a slot flashed at the factory has no RAUC status)."""
        self.device_dir, self.rauc = device_dir, rauc
        self.reboot, self.self_test, self.health = reboot, self_test, health
        self.boot_id, self.running_version, self.clock = boot_id, running_version, clock
        self.settings = settings or SystemUpdateSettings()
        self.store = SystemStateStore(system_dir(device_dir))
        self._deferred: set[str] = set()
        state = self.store.state
        if state.phase == "trial" and state.boot_id == self.boot_id():
            self._save(trial_starts=state.trial_starts + 1)

    @property
    def state(self) -> SystemState:
        return self.store.state

    def _save(self, *reports: SystemReport, **changes: object) -> SystemState:
        state = queue(self.store.state.model_copy(update=changes), *reports)
        self.store.save(state)
        return state

    def pending_reports(self) -> list[SystemReport]:
        return list(self.state.reports)

    def ack(self, report: SystemReport) -> None:
        """The server has ``report``: drop it from the queue."""
        reports = list(self.state.reports)
        if report in reports:
            reports.remove(report)
            self._save(reports=reports)

    # ---- an offer -------------------------------------------------------------------------------------------

    def _running(self, status: RaucStatus) -> str | None:
        booted = status.booted_slot()
        return (booted.bundle_version if booted else None) or self.running_version()

    def wants(self, offer: SystemOffer) -> SystemReport | None:
        """None: fetch and verify the bundle, then :meth:`stage` it. Otherwise the report to send instead (busy,
        or already running that version: nothing to download)."""
        state = self.state
        if state.in_flight:
            return deferral(state, offer)
        try:
            running = self._running(self.rauc.status())
            current = running is not None and version_key(running) == version_key(offer.version)
        except (RaucError, ValueError):
            return None  # the check after the download says why, with the bundle at hand
        if not current:
            return None
        report = SystemReport(offer.rollout_id, "healthy", offer.version, reason="already_running")
        if report not in state.reports:
            self._save(report)
        return report

    def stage(self, bundle: Path, offer: SystemOffer) -> SystemReport:
        """Take the bundle the caller verified through TUF (its file stays until installed or refused)."""
        if self.state.phase != "idle":
            return SystemReport(offer.rollout_id, "deferred", offer.version, reason="system_update_in_progress")
        report = SystemReport(offer.rollout_id, "downloaded", offer.version)
        self.store.save(queue(SystemState(phase="downloaded", offer=offer, bundle=str(bundle),
                                          reports=self.state.reports), report))  # fmt: skip
        log.info("system update %s staged from %s", offer.version, bundle)
        return report

    # ---- the steps ------------------------------------------------------------------------------------------

    def step(self) -> list[SystemReport]:
        """Advance as far as the state allows now; returns the reports made (outcomes also stay queued)."""
        made: list[SystemReport] = []
        if self.state.phase in BEFORE_REBOOT:
            with update_lock(self.device_dir, "system") as lock:
                if lock is None:
                    return self._defer(busy_reason(self.device_dir, "system"))
                self._advance(made)
        else:
            self._advance(made)
        return made

    def _defer(self, why: str) -> list[SystemReport]:
        offer = self.state.offer
        if offer is None or why in self._deferred:
            return []
        self._deferred.add(why)
        log.info("system update %s waits: %s", offer.version, why)
        return [SystemReport(offer.rollout_id, "deferred", offer.version, reason=why)]

    def _advance(self, made: list[SystemReport]) -> None:
        handlers: dict[str, Callable[[list[SystemReport]], bool]] = {
            "downloaded": self._check, "checked": self._begin_install, "installing": self._install,
            "installed": self._request_tryboot, **dict.fromkeys(("rebooting", "trial", "reverting"), self._where_now),
        }  # fmt: skip
        for _ in range(len(handlers) + 2):  # each handler either moves on or waits
            handler = handlers.get(self.state.phase)
            if handler is None or not handler(made):
                return

    def _end(self, made: list[SystemReport], state: ReportState, reason: str | None, slot: str | None = None) -> bool:
        """Report the outcome and go idle (deleting the bundle if it is still here)."""
        current = self.state
        assert current.offer is not None
        slot = slot or (current.to_slot.name if current.to_slot else None)
        report = SystemReport(current.offer.rollout_id, state, current.offer.version, slot, reason)
        self.store.save(queue(SystemState(reports=current.reports), report))
        if current.bundle:
            Path(current.bundle).unlink(missing_ok=True)
        made.append(report)
        level = logging.INFO if state == "healthy" else logging.ERROR
        log.log(level, "system update %s: %s%s", current.offer.version, state, f" ({reason})" if reason else "")
        return False

    def _retry(self, made: list[SystemReport], exc: RaucError, final: ReportState) -> bool:
        if (changes := retry(self.state, self.clock(), self.boot_id(), self.settings)) is None:
            return self._end(made, final, f"{exc.code}: {exc.reason}")
        log.warning("system update: RAUC not ready (%s), trying again later", exc)
        self._save(**changes)
        return False

    def _check(self, made: list[SystemReport]) -> bool:
        state = self.state
        assert state.offer is not None and state.bundle is not None
        try:
            status = self.rauc.status()
            info = self.rauc.info(Path(state.bundle))
        except RaucError as exc:
            if exc.retryable:
                return self._retry(made, exc, "failed")
            return self._end(made, "rejected", f"{exc.code}: {exc.reason}")
        running = self._running(status)
        verdict = judge(state.offer, info, status, running)
        if verdict.action != "install":
            return self._end(made, "healthy" if verdict.action == "current" else "rejected", verdict.reason)
        booted, other = status.booted_slot(), status.other()
        assert booted is not None and other is not None  # judge() refuses otherwise
        self._save(phase="checked", from_version=running, attempts=0,
                   from_slot=SlotRef(name=booted.name, bootname=booted.bootname or booted.name),
                   to_slot=SlotRef(name=other.name, bootname=other.bootname or other.name))  # fmt: skip
        return True

    def _begin_install(self, made: list[SystemReport]) -> bool:
        self._save(phase="installing", attempts=0)  # from here a start runs ``rauc install`` (again)
        return True

    def _install(self, made: list[SystemReport]) -> bool:
        state = self.state
        assert state.offer is not None and state.bundle is not None and state.to_slot is not None
        try:
            self.rauc.install(Path(state.bundle))
        except RaucError as exc:
            if exc.retryable:
                return self._retry(made, exc, "failed")
            refused = exc.code in ("bundle_signature_invalid", "compatible_mismatch")
            return self._end(made, "rejected" if refused else "failed", f"install_failed: {exc.reason}")
        installed = self._installed_version(state.to_slot.name)
        if installed is not None and installed != state.offer.version:
            return self._end(made, "failed", f"installed_version_mismatch: RAUC says {installed}")
        report = SystemReport(state.offer.rollout_id, "installed", state.offer.version, state.to_slot.name)
        self._save(report, phase="installed", bundle=None, attempts=0)
        made.append(report)
        Path(state.bundle).unlink(missing_ok=True)  # the slot holds it now
        return True

    def _installed_version(self, slot: str) -> str | None:
        try:
            found = self.rauc.status().slot(slot)
        except RaucError as exc:
            log.warning("system update: cannot read RAUC's status after the install: %s", exc)
            return None
        return found.bundle_version if found else None

    def _request_tryboot(self, made: list[SystemReport], reason: str | None = None) -> bool:
        state = self.state
        assert state.offer is not None and state.to_slot is not None
        report = SystemReport(state.offer.rollout_id, "rebooting", state.offer.version, state.to_slot.name, reason)
        self._save(report, phase="rebooting", boot_id=self.boot_id(), requested_at=self.clock(), reboot_requests=1,
                   tryboots=state.tryboots + 1)  # fmt: skip
        made.append(report)
        self._reboot("tryboot")
        return False

    def _reboot(self, kind: RebootKind) -> None:
        log.warning("system update: rebooting (%s)", kind)
        try:
            self.reboot(kind)
        except Exception:  # asked again after reboot_timeout
            log.exception("system update: the reboot request failed")

    def _where_now(self, made: list[SystemReport]) -> bool:
        try:
            status = self.rauc.status()
        except RaucError as exc:
            log.warning("system update: cannot read RAUC's status: %s", exc)
            return False
        booted = status.booted_slot()
        name = booted.name if booted else status.booted
        move = where_now(self.state, name, self.boot_id(), self.clock(), self.settings, status.boot_primary)
        return self._move(made, move, name)

    def _move(self, made: list[SystemReport], move: Move, booted: str | None) -> bool:
        state = self.state
        assert state.to_slot is not None and state.from_slot is not None
        if move == "wait":
            return False
        if move == "reboot_again":
            self._save(requested_at=self.clock(), reboot_requests=state.reboot_requests + 1)
            self._reboot(reboot_kind(state))
            return False
        if move == "trial":
            return self._trial(made)
        if move == "tryboot_again":
            return self._tryboot_again(made)
        if move == "revert_again":
            return self._revert_again(made)
        if move == "commit_old" and not self._commit_old(made):
            return False
        self._best_effort(lambda: self.rauc.mark_bad(state.to_slot.name if state.to_slot else "other"))
        return self._end(made, *ending(move, state, booted))

    def _best_effort(self, action: Callable[[], str]) -> None:
        try:
            action()
        except RaucError as exc:
            log.warning("system update: %s", exc)

    def _tryboot_again(self, made: list[SystemReport]) -> bool:
        """Back on the old slot before a trial ended: arm the new one once more (the cut may not be its fault)."""
        state = self.state
        assert state.to_slot is not None
        try:
            self.rauc.mark_active(state.to_slot.name)
        except RaucError as exc:
            return self._end(made, "rolled_back", f"new_slot_did_not_boot; cannot arm it again: {exc.reason}")
        return self._request_tryboot(made, "tryboot_again")

    def _trial(self, made: list[SystemReport]) -> bool:
        state, boot = self.state, self.boot_id()
        assert state.offer is not None and state.to_slot is not None
        if state.phase != "trial" or state.boot_id != boot:  # the first start of a trial boot
            report = SystemReport(state.offer.rollout_id, "trial", state.offer.version, state.to_slot.name)
            state = self._save(report, phase="trial", boot_id=boot, trial_starts=1, self_test_ok=False,
                               requested_at=None, reboot_requests=0, attempts=0)  # fmt: skip
            made.append(report)
            log.warning("system update %s: on trial in slot %s", report.version, report.slot)
        if state.trial_starts > self.settings.max_trial_starts:
            return self._revert(f"agent_restarted: {state.trial_starts} starts in the trial boot")
        if not state.self_test_ok:
            outcome = self._self_test()
            if not outcome.ok:
                return self._revert(f"self_test_failed: {outcome.reason}: {outcome.detail}")
            self._save(self_test_ok=True)
        verdict = self.health()
        if verdict is None:
            return False
        if verdict != "ok":
            return self._revert(f"health_check_failed: {verdict}")
        try:
            self.rauc.mark_good("booted")
        except RaucError as exc:
            if self.state.attempts + 1 >= self.settings.max_attempts:
                return self._revert(f"mark_good_failed: {exc.reason}")
            self._save(attempts=self.state.attempts + 1)
            return False
        return self._end(made, "healthy", None)

    def _self_test(self) -> Outcome:
        try:
            return self.self_test()
        except Exception as exc:  # the self-test must not take the updater down: it failed
            return Failed(False, "crashed", f"{type(exc).__name__}: {exc}")

    def _revert(self, reason: str) -> bool:
        """The trial failed: mark the new slot bad and reboot normally, into the previous slot."""
        log.error("system update: the trial failed (%s): going back", reason)
        self._save(phase="reverting", reason=reason, boot_id=self.boot_id(), requested_at=self.clock(),
                   reboot_requests=1, reverts=0, attempts=0)  # fmt: skip
        self._best_effort(lambda: self.rauc.mark_bad("booted"))
        self._reboot("normal")
        return False

    def _revert_again(self, made: list[SystemReport]) -> bool:
        """A revert's plain reboot came back to the new slot: the bootloader commits it (a mark-good landed before the
        trial failed). Mark it bad where RAUC may (GRUB-style: activating the old slot then commits its boot order);
        the Pi's backend refuses that for the committed slot, and activating the old one arms a one-shot try of it:
        the reboot is that try (:func:`reboot_kind`), and the old slot, up again, is marked good: committed."""
        state = self.state
        assert state.from_slot is not None and state.to_slot is not None
        if state.reverts >= self.settings.max_reverts:
            return self._end(made, "failed", f"{state.reason}; cannot_leave_new_slot")
        old, new = state.from_slot.name, state.to_slot.name
        self._best_effort(lambda: self.rauc.mark_bad(new))
        self._best_effort(lambda: self.rauc.mark_active(old))
        state = self._save(boot_id=self.boot_id(), requested_at=self.clock(), reboot_requests=1,
                           reverts=state.reverts + 1, attempts=0)  # fmt: skip
        self._reboot(reboot_kind(state))
        return False

    def _commit_old(self, made: list[SystemReport]) -> bool:
        """Back on the old slot by a one-shot try after :meth:`_revert_again`: mark it good, which commits it (the
        Pi); True: done, the revert ends as usual (the new slot, no longer committed, marked bad)."""
        state = self.state
        try:
            self.rauc.mark_good("booted")
        except RaucError as exc:
            if exc.retryable and state.attempts + 1 < self.settings.max_attempts:
                self._save(attempts=state.attempts + 1)
                return False
            return self._end(made, "failed", f"{state.reason}; cannot_commit_old_slot: {exc.reason}")
        return True
