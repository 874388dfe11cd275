"""System updates from the fleet: the offer, TUF, the download, then :class:`~firmware.ota.system_update.SystemUpdater`.

An agent on a RAUC image (:func:`system_updates_available`) polls ``GET /api/v1/device/update?system=1``
(:class:`SystemAwareChannel`, the model manager's channel, so the device has one poll and the server answers one
offer at a time: its system update first). A system offer goes to :class:`SystemClient`, which on its own thread:

1. asks TUF for the offer's target (``system/<compatible>/<version>.raucb``) and checks the **signed** custom
   metadata before downloading anything: a system bundle (``kind``), for the version offered, for this board (the
   signed ``compatible`` must be what ``rauc status`` says this system is; the offer's own word is not trusted),
   newer than the running system unless the offer is a rollback, and not below the hospital's signed floor for this
   board (:mod:`wardsight.sysfloor`, read from the same verified targets metadata: a rollback below it is refused
   too). A refusal is reported ``rejected`` with the reason (``incompatible``, ``not_newer``, ``below_signed_floor``,
   ...);
2. downloads it with resume into ``<device dir>/ota/system/partial`` (its own :class:`BundleDownloader`: the model
   manager's prune never touches it) and verifies it against the signed length and sha256, holding the device's
   update lock as ``system`` (a model update and a system update never run at the same time);
3. inside the offer's maintenance window, stages it (:meth:`SystemUpdater.stage`): RAUC checks its own signature and
   manifest, installs into the inactive slot, and the device reboots into it once (tryboot);
4. steps the updater every few seconds while an update is in flight (waiting for the reboot, on trial: self-test,
   health check, ``rauc status mark-good``), and sends its reports (queued in its state file until the server has
   them) as :class:`wardsight.wire.UpdateReport` with ``model`` the compatible, the reason's code in ``reason`` and
   the rest of it (RAUC's own words) in ``detail``. ``trial`` is reported as ``activated``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from tuf.api.metadata import TargetFile, Targets

from firmware.ota.channel import ChannelError, FleetChannel, UpdateChannel
from firmware.ota.download import DownloadError, TargetDownloader
from firmware.ota.rauc import RaucError
from firmware.ota.system_state import SystemOffer, SystemReport, judge_floor, judge_version, system_dir, update_lock
from firmware.ota.system_update import SystemUpdater, busy_reason
from firmware.ota.tufclient import TufClient, TufError
from firmware.transport import FleetClient, NotAuthorizedError, UnreachableError
from wardsight import sysfloor, wire
from wardsight.paths import write_file_atomically

log = logging.getLogger("wardsight.device.ota")

SYSTEM_CONF = Path("/etc/rauc/system.conf")
NETWORK = frozenset({"tuf_unreachable", "download_failed", "download_incomplete", "storage_error"})
ENDED = frozenset({"rejected", "failed", "rolled_back"})  # outcomes after which an offer is not taken again here
ENDED_FILE = "ended.json"  # <device dir>/ota/system/: those offers, kept across reboots (the newest MAX_ENDED)
MAX_ENDED = 64
_CODE = re.compile(r"[^a-z0-9_]+")
_WIRE_STATE: dict[str, wire.UpdateState] = {"trial": "activated"}


def system_updates_available(
    which: Callable[[str], str | None] = shutil.which, conf: Path = SYSTEM_CONF
) -> bool:
    """Whether this device can take system updates: RAUC installed and configured (an image with A/B slots)."""
    return which("rauc") is not None and conf.is_file()


def split_reason(text: str | None) -> tuple[str | None, str | None]:
    """A system report's reason as the wire carries it: the code before the first ``:`` and the rest as detail."""
    if not text:
        return None, None
    code, _, rest = text.partition(":")
    code = _CODE.sub("_", code.strip().lower()).strip("_")[:64]
    code = code if code[:1].isalpha() else f"r_{code}"[:64]
    detail = "".join(c if c.isprintable() else " " for c in rest.strip())[:256] or None
    return code, detail


def wire_report(report: SystemReport, compatible: str) -> wire.UpdateReport:
    reason, detail = split_reason(report.reason)
    state = _WIRE_STATE.get(report.state, cast(wire.UpdateState, report.state))  # the others are the wire's own
    return wire.UpdateReport(rollout_id=report.rollout_id, model=compatible, version=report.version,
                             state=state, reason=reason, detail=detail)  # fmt: skip


class BundleDownloader(TargetDownloader):
    """:class:`TargetDownloader` under ``<device dir>/ota/system`` (``partial/``, ``verified/``), naming a verified
    bundle ``<sha256>.raucb``."""

    def paths(self, info: TargetFile) -> tuple[Path, Path]:
        part, final = super().paths(info)
        return part, final.with_suffix(".raucb")


@dataclass(frozen=True)
class SystemSettings:
    step_seconds: float = 3.0  # while an update is in flight (waiting for the reboot, on trial)
    poll_seconds: float = 300.0  # its own poll, when no model manager polls for it
    retry_seconds: float = 60.0
    max_attempts: int = 5  # verification failures of one offer before it is reported failed


class Refused(Exception):
    """An offer this device will not take: reported ``state`` with ``reason`` and ``detail``."""

    def __init__(self, reason: str, detail: str | None = None, state: wire.UpdateState = "rejected") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.state = reason, detail, state


class SystemClient:
    """One device's system updates from the fleet. :meth:`step` does one round; :meth:`start` runs them on a thread."""

    def __init__(
        self,
        updater: SystemUpdater,
        channel: UpdateChannel,
        tuf: TufClient,
        downloader: TargetDownloader,
        *,
        server_now: Callable[[], float] = time.time,
        settings: SystemSettings | None = None,
        own_poll: Callable[[], wire.UpdateOffer | None] | None = None,
    ) -> None:
        """``own_poll``: how to poll for offers itself (:func:`poll_offer`; a device whose model manager does not
        run); without it, offers come through :meth:`take` (from :class:`SystemAwareChannel`)."""
        self.updater, self.channel, self.tuf, self.downloader = updater, channel, tuf, downloader
        self.server_now, self.own_poll = server_now, own_poll
        self.settings = settings or SystemSettings()
        self._offer: wire.UpdateOffer | None = None
        self._noted: set[tuple[str, str, str | None]] = set()
        self._attempts: dict[tuple[str, str], int] = {}
        self._verified: dict[str, Path] = {}  # sha256 -> the verified bundle (not hashed again each round)
        self._compatible: str | None = None
        self._lock = threading.Lock()
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the loop ---------------------------------------------------------------------------------------------

    def take(self, offer: wire.UpdateOffer) -> None:
        """The poll found a system offer: handle it on this client's thread."""
        with self._lock:
            self._offer = offer
        self._wake.set()

    def start(self) -> SystemClient:
        self._thread = threading.Thread(target=self.run, name="ota-system", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                status = self.step()
            except Exception:  # the update loop must never take the agent down
                log.exception("system update round failed")
                status = "retry"
            s = self.settings
            wait = s.step_seconds if self.updater.state.in_flight else s.poll_seconds if self.own_poll else 3600.0
            self._wake.wait(s.retry_seconds if status == "retry" else wait)
            self._wake.clear()

    def step(self) -> str:
        """One round: send queued reports, advance an update in flight, or handle the offer the poll gave."""
        self.flush()
        if self.updater.state.in_flight:
            made = self.updater.step()
            self._send_unqueued(made)
            self.flush()
            return self.updater.state.phase
        with self._lock:
            offer, self._offer = self._offer, None
        if offer is None and self.own_poll:
            offer = self._poll()
        return "idle" if offer is None else self.handle(offer)

    def _poll(self) -> wire.UpdateOffer | None:
        assert self.own_poll is not None
        try:
            offer = self.own_poll()
        except (UnreachableError, NotAuthorizedError, ChannelError) as exc:
            log.info("no system update poll: %s", exc)
            return None
        return offer if offer is not None and offer.kind == "system" else None

    # ---- reports ----------------------------------------------------------------------------------------------

    def compatible(self) -> str:
        """This system's RAUC compatible (``rauc status``; fixed for the device, read once)."""
        if self._compatible is None:
            self._compatible = self.updater.rauc.status().compatible
        return self._compatible

    def flush(self) -> None:
        """Send the updater's queued reports, oldest first, until one cannot be delivered."""
        pending = self.updater.pending_reports()
        if not pending:
            return
        self._ended(*(f"{r.rollout_id}/{r.version}" for r in pending if r.state in ENDED))
        compatible = self.compatible()
        for report in pending:
            if not self.channel.report(wire_report(report, compatible)):
                return
            self.updater.ack(report)

    def _ended(self, *keys: str) -> set[str]:
        """The offers that ended here (refused, failed, rolled back), with ``keys`` added: the server may offer one
        again until its next tick, and it must not be installed again (after a roll back, the device rebooted)."""
        path = system_dir(self.updater.device_dir) / ENDED_FILE
        try:
            known = json.loads(path.read_text())
            ended = [k for k in known if isinstance(k, str)] if isinstance(known, list) else []
        except (OSError, ValueError):
            ended = []
        new = [k for k in dict.fromkeys(keys) if k not in ended]
        if new:
            ended = (ended + new)[-MAX_ENDED:]
            write_file_atomically(path, json.dumps(ended).encode())
        return set(ended)

    def _send_unqueued(self, made: list[SystemReport]) -> None:
        """Reports the updater does not queue (``deferred``): sent once, best effort."""
        queued = self.updater.pending_reports()
        for report in made:
            if report not in queued and report.state == "deferred":
                self._note_report(report.rollout_id, report.version, "deferred", *split_reason(report.reason))

    def _note_report(self, rollout_id: str, version: str, state: wire.UpdateState, reason: str | None = None,
                     detail: str | None = None, model: str | None = None) -> None:  # fmt: skip
        key = (f"{rollout_id}/{version}", state, reason)
        if key in self._noted:
            return
        self._noted.add(key)
        report = wire.UpdateReport(rollout_id=rollout_id, model=model or self.compatible(), version=version,
                                   state=state, reason=reason, detail=detail)  # fmt: skip
        self.channel.report(report)

    def _note(self, offer: wire.UpdateOffer, state: wire.UpdateState, reason: str | None = None,
              detail: str | None = None) -> None:  # fmt: skip
        self._note_report(offer.rollout_id, offer.version, state, reason, detail, offer.model)

    # ---- an offer ---------------------------------------------------------------------------------------------

    def handle(self, offer: wire.UpdateOffer) -> str:
        """Check, fetch and stage one system offer; returns what happened (rejected, failed, current, waiting, retry,
        deferred, installing)."""
        if offer.kind != "system":
            return "ignored"
        if wire.update_hint(offer) in self._ended():
            return "ended"
        try:
            info, url, signed = self.tuf.lookup(offer.target)
            wanted = self._check_signed(offer, info, signed)
            current = self.updater.wants(wanted)
            if current is not None:
                self.flush()
                return "current" if current.state == "healthy" else "deferred"
            return self._fetch_and_stage(offer, wanted, info, url)
        except Refused as exc:
            log.error("system update %s refused: %s", offer.version, exc)
            self._note(offer, exc.state, exc.reason, exc.detail)
            self._ended(f"{offer.rollout_id}/{offer.version}")
            return str(exc.state)
        except (TufError, DownloadError) as exc:
            return self._trouble(offer, exc.code, str(exc))
        except RaucError as exc:
            log.warning("system update %s: RAUC: %s", offer.version, exc)
            return "retry"

    def _trouble(self, offer: wire.UpdateOffer, code: str, text: str) -> str:
        log.warning("system update %s: %s", offer.version, text)
        if code in NETWORK:
            return "retry"
        key = (offer.rollout_id, offer.version)
        self._attempts[key] = self._attempts.get(key, 0) + 1
        if self._attempts[key] < self.settings.max_attempts:
            return "retry"
        self._note(offer, "failed", code, f"{self._attempts[key]} attempts: {text}"[:256])
        self._ended(f"{offer.rollout_id}/{offer.version}")
        return "failed"

    def _check_signed(self, offer: wire.UpdateOffer, info: TargetFile, targets: Targets) -> SystemOffer:
        """What TUF signed must be a bundle for this board and the offered version, not below the floor the verified
        ``targets`` metadata sets for this board (else :class:`Refused`)."""
        custom = info.custom if isinstance(info.custom, dict) else {}
        path = wire.SYSTEM_TARGET_PATH.match(info.path)
        signed = (custom.get("kind"), custom.get("compatible"), custom.get("version"))
        if path is None or signed != ("system", path.group(1), path.group(2)):
            raise Refused("not_a_system_bundle", f"the signed target {info.path} is no system bundle")
        compatible, version = path.group(1), path.group(2)
        if version != offer.version:
            raise Refused("version_mismatch", f"offered {offer.version}, signed {version}")
        mine = self.compatible()
        if compatible != mine:
            raise Refused("incompatible", f"the bundle is signed for '{compatible}', this system is '{mine}'")
        wanted = SystemOffer(rollout_id=offer.rollout_id, version=version, compatible=compatible,
                             rollback=offer.rollback)  # fmt: skip
        floor = judge_floor(wanted, targets.unrecognized_fields.get(sysfloor.CUSTOM))
        verdict = floor if floor is not None else judge_version(wanted, self._running_version())
        if verdict.action == "reject":
            code, detail = split_reason(verdict.reason)
            raise Refused(code or "rejected", detail)
        return wanted

    def _running_version(self) -> str | None:
        status = self.updater.rauc.status()
        booted = status.booted_slot()
        return (booted.bundle_version if booted else None) or self.updater.running_version()

    def _fetch_and_stage(self, offer: wire.UpdateOffer, wanted: SystemOffer, info: TargetFile, url: str) -> str:
        device_dir = self.updater.device_dir
        with update_lock(device_dir, "system") as lock:
            if lock is None:
                self._note(offer, "deferred", busy_reason(device_dir, "system"))
                return "deferred"
            bundle = self._download(offer, info, url)
            if not self._in_window(offer):
                self._note(offer, "downloaded")
                self._note(offer, "deferred", "outside_window")
                return "waiting"
            self.updater.stage(bundle, wanted)
            self._verified.pop(info.hashes["sha256"], None)
        made = self.updater.step()  # RAUC's checks, the install, the reboot request (it takes the lock itself)
        self._send_unqueued(made)
        self.flush()
        return next((r.state for r in made if r.state in ("rejected", "failed")), "installing")

    def _download(self, offer: wire.UpdateOffer, info: TargetFile, url: str) -> Path:
        digest = info.hashes["sha256"]
        known = self._verified.get(digest)
        if known is not None and known.is_file():
            return known
        bundle = self.downloader.verified(info)
        if bundle is None:
            self.downloader.prune(keep=info)  # another offer's leftovers must not fill the card
            self._note(offer, "downloading")
            part, resumed_from, fetched = self.downloader.download(info, url)
            log.info("system bundle %s: %d bytes fetched (resumed from %d)", offer.version, fetched, resumed_from)
            bundle = self.downloader.verify(info, part)
        self._verified[digest] = bundle
        return bundle

    def _in_window(self, offer: wire.UpdateOffer) -> bool:
        now = self.server_now()
        if offer.window_start is not None and now < offer.window_start:
            return False
        return offer.window_end is None or now < offer.window_end


class SystemAwareChannel(FleetChannel):
    """The model manager's channel on a device that takes system updates: one poll, ``?system=1``; a system offer
    goes to the :class:`SystemClient` (the model manager sees nothing to do), a model offer to the model manager."""

    def __init__(self, client: FleetClient, system: SystemClient) -> None:
        super().__init__(client)
        self.system = system

    def poll(self, *, system: bool = True) -> wire.UpdateOffer | None:
        offer = super().poll(system=True)
        if offer is not None and offer.kind == "system":
            self.system.take(offer)
            return None
        return offer


def poll_offer(client: FleetClient) -> wire.UpdateOffer | None:
    """The device's one offer, of either kind (``GET /api/v1/device/update?system=1``)."""
    return FleetChannel(client).poll(system=True)


def bundle_downloader(device_dir: Path, context: ssl.SSLContext | None, timeout: float = 30.0) -> BundleDownloader:
    """The system bundles' downloader: ``<device dir>/ota/system/{partial,verified}``."""
    return BundleDownloader(system_dir(device_dir), context, timeout=timeout)
