"""Two model slots (A/B) with a trial boot, and the one state file that says which model the agent runs.

Layout under ``<device dir>/models/slots/``::

    a/<model file>  a/manifest.json       one installed build each (the package's manifest beside it)
    b/...
    state.json                             written atomically: temp file, fsync, rename, fsync of the dir

The state names an ``active`` slot (a model that passed its health check, or ``None`` for the *factory*
model: the pinned CPU MoveNet from the artifact store, also after an offer sent the device back to it,
:meth:`SlotStore.to_factory`), the ``previous`` one, a record per slot of the build
it holds (name, version, sha256, size), an optional ``trial`` (a newly installed slot the next start runs,
with a count of the starts it has had) and the reports the server has not yet acknowledged.

Every change is one atomic replacement of ``state.json``, and the files of a slot are written only while the
state says that slot holds nothing: first its record is dropped (state written), then its files are
replaced and synced, then the new record is written. The active slot, the trial slot and the fallback chain
are never written to. So a power cut or SIGKILL at any moment leaves a state naming only complete, synced
slots, and each start checks the chosen slot's sha256 before it is used (falling back to the next in
``trial -> active -> previous -> factory`` when a file is damaged).

A trial is a *start count*, not a clock: :meth:`SlotStore.boot` counts a start into the trial before the
model is loaded, so a model that crashes the agent (or hangs it until the watchdog kills it) is abandoned
after ``max_trial_boots`` starts. :meth:`SlotStore.confirm` makes the trial slot active once the agent's
health check passes.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

from pydantic import ValidationError

from firmware.ota.slotreports import SlotReports
from firmware.ota.slotstate import (
    SLOTS,
    STATE_FILE,
    Choice,
    Failure,
    Slot,
    SlotError,
    SlotRecord,
    SlotState,
    Trial,
)
from wardsight import modelpkg, wire
from wardsight.paths import fsync_dir, write_file_atomically

log = logging.getLogger("wardsight.device.ota")


class SlotStore(SlotReports):
    """The slots of one device; safe to share between the agent's threads (one agent process per device)."""

    def __init__(self, root: Path, *, max_trial_boots: int = 2) -> None:
        if max_trial_boots < 1:
            raise ValueError("max_trial_boots must be at least 1")
        self.root = root
        self.max_trial_boots = max_trial_boots
        self._lock = threading.RLock()
        root.mkdir(parents=True, exist_ok=True)
        for slot in SLOTS:
            (root / slot).mkdir(exist_ok=True)
        self._state = self._read()

    # ---- persistence --------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def _read(self) -> SlotState:
        for stale in self.root.glob(f".{STATE_FILE}.*.tmp"):  # a write that a crash interrupted
            stale.unlink(missing_ok=True)
        try:
            raw = self.state_path.read_bytes()
        except FileNotFoundError:
            return SlotState()
        try:
            return SlotState.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            # Cannot happen through our own writes (each is atomic); a damaged card can do it. The factory
            # model always works, and the next install rewrites a slot from scratch.
            log.error("slot state %s is unreadable (%s); starting from the factory model", self.state_path, exc)
            return SlotState()

    def _save(self, state: SlotState) -> None:
        write_file_atomically(self.state_path, state.model_dump_json(indent=2).encode())
        self._state = state

    @property
    def state(self) -> SlotState:
        with self._lock:
            return self._state.model_copy(deep=True)

    def slot_dir(self, slot: Slot) -> Path:
        return self.root / slot

    def model_path(self, slot: Slot) -> Path:
        record = self._state.slots.get(slot)
        if record is None:
            raise SlotError(f"slot {slot} holds no model")
        return self.slot_dir(slot) / record.build.file

    # ---- checks ---------------------------------------------------------------------------------------

    def check(self, slot: Slot, record: SlotRecord | None = None) -> str | None:
        """Why ``slot``'s file cannot be used (missing, wrong size or sha256), or None when it is intact.

        ``record`` is what the slot should hold (default: what the state says it holds).
        """
        record = record or self._state.slots.get(slot)
        if record is None:
            return "empty"
        path = self.slot_dir(slot) / record.build.file
        try:
            if path.stat().st_size != record.build.size:
                return "size_mismatch"
            if modelpkg.file_sha256(path) != record.build.sha256:
                return "hash_mismatch"
        except OSError:
            return "missing"
        return None

    # ---- starting ---------------------------------------------------------------------------------------

    def boot(self) -> Choice:
        """Decide what this start runs, counting it into a trial first (see the module docstring).

        Returns the trial slot while it has starts left, else the active slot, else the previous one, else
        the factory model; a slot whose file fails its check is skipped (and forgotten, with a log line).
        """
        with self._lock:
            state = self.state
            if state.trial is not None:
                trial = state.trial
                trial.boots += 1
                record = state.slots.get(trial.slot)
                if trial.boots > self.max_trial_boots:
                    log.error(
                        "model %s did not pass its health check within %d starts: switching back",
                        record.version if record else "?",
                        self.max_trial_boots,
                    )
                    self._end_trial(state, "crashed")
                elif (why := self.check(trial.slot, record)) is not None:
                    log.error("trial slot %s cannot be used (%s): switching back", trial.slot, why)
                    self._end_trial(state, "install_damaged")
                elif trial.boots == 1 and record is not None:
                    self._queue(state, self._report(trial.rollout_id, record, "activated"))
                self._save(state)
                if state.trial is not None:
                    slot = state.trial.slot
                    rec = state.slots[slot]
                    assert rec is not None
                    log.info("model %s %s in slot %s on trial: start %d of at most %d", rec.name, rec.version, slot,
                             state.trial.boots, self.max_trial_boots)  # fmt: skip
                    return Choice(slot, rec, self.slot_dir(slot) / rec.build.file, trial=True)
            if state.factory_switch is not None and state.trial is None:
                self.factory_started(state)
                self._save(state)
            return self._fallback_choice()

    def _fallback_choice(self) -> Choice:
        state = self.state
        # No active slot is the factory model (even with a previous slot, kept after a switch back to it).
        for slot in (state.active, state.previous) if state.active is not None else ():
            if slot is None:
                continue
            why = self.check(slot)
            rec = state.slots.get(slot)
            if why is None and rec is not None:
                return Choice(slot, rec, self.slot_dir(slot) / rec.build.file)
            log.error("model slot %s cannot be used (%s); falling back", slot, why)
            self._forget(state, slot)
            self._save(state)
        return Choice(None)

    def abandon(self, choice: Choice, reason: str) -> Choice:
        """The agent could not load ``choice``: record why and return the next model to try."""
        with self._lock:
            state = self.state
            if choice.slot is None:
                raise SlotError("the factory model cannot be abandoned")
            if choice.trial and state.trial is not None and state.trial.slot == choice.slot:
                self._end_trial(state, reason)
            else:
                log.error("model slot %s failed to load (%s); falling back", choice.slot, reason)
                self._forget(state, choice.slot)
            self._save(state)
            return self._fallback_choice()

    def _forget(self, state: SlotState, slot: Slot) -> None:
        state.slots[slot] = None
        if state.active == slot:
            state.active, state.previous = state.previous, None
        if state.previous == slot:
            state.previous = None

    def _end_trial(self, state: SlotState, reason: str) -> None:
        trial = state.trial
        assert trial is not None
        record = state.slots.get(trial.slot)
        name = record.name if record else "unknown"
        version = record.version if record else "0"
        state.trial = None
        state.last_failure = Failure(
            rollout_id=trial.rollout_id, model=name, version=version, reason=reason, at=time.time()
        )
        self._reject(state, trial.rollout_id, version)
        report = wire.UpdateReport(
            rollout_id=trial.rollout_id, model=name, version=version, state="rolled_back", reason=reason
        )
        self._queue(state, report)

    # ---- installing -------------------------------------------------------------------------------------

    def install_target(self) -> Slot:
        """The slot an install may write: never the active one, nor a trial; keeps ``previous`` if it can."""
        with self._lock:
            state = self._state
            busy = {state.active, state.trial.slot if state.trial else None}
            free = [s for s in SLOTS if s not in busy]
            if not free:
                raise SlotError("both slots are in use (active and trial)")
            spare = [s for s in free if s != state.previous]
            return spare[0] if spare else free[0]

    def installed(self, version: str, name: str) -> Slot | None:
        """A slot (not the active one) already holding this build intact, e.g. after a kill before the switch."""
        with self._lock:
            state = self._state
            for slot in SLOTS:
                rec = state.slots.get(slot)
                fits = rec is not None and rec.version == version and rec.name == name
                if fits and slot != state.active and self.check(slot) is None:
                    return slot
            return None

    def prepare(self, slot: Slot) -> Path:
        """Step 1 of an install: forget what ``slot`` holds (state written), then empty its directory."""
        with self._lock:
            if slot not in SLOTS:
                raise SlotError(f"no slot {slot}")
            state = self.state
            if slot == state.active or (state.trial and state.trial.slot == slot):
                raise SlotError(f"slot {slot} is in use; an install never writes it")
            if state.slots.get(slot) is not None or state.previous == slot:
                self._forget(state, slot)
                self._save(state)
            directory = self.slot_dir(slot)
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            fsync_dir(self.root)
            return directory

    def write(self, slot: Slot, package: Path, manifest: modelpkg.Manifest, build: modelpkg.Build) -> Path:
        """Step 2: extract ``build`` from the verified package into the emptied slot and sync it to disk."""
        with self._lock:
            if self._state.slots.get(slot) is not None:
                raise SlotError(f"slot {slot} was not prepared")
        directory = self.slot_dir(slot)
        dest = modelpkg.extract_build(package, build, directory / build.file)  # sha256 checked, fsynced
        write_file_atomically(directory / modelpkg.MANIFEST, manifest.model_dump_json(indent=2).encode())
        fsync_dir(directory)
        return dest

    def commit(self, slot: Slot, manifest: modelpkg.Manifest, build: modelpkg.Build, rollout_id: str | None) -> None:
        """Step 3: record the slot's build (only now does any start consider it)."""
        with self._lock:
            state = self.state
            if slot == state.active or (state.trial and state.trial.slot == slot):
                raise SlotError(f"slot {slot} is in use")
            record = SlotRecord(
                name=manifest.name, version=manifest.version, task=manifest.task, build=build, rollout_id=rollout_id
            )
            why = self.check(slot, record)
            if why is not None:
                raise SlotError(f"slot {slot} does not hold the build just written ({why})")
            state.slots[slot] = record
            self._save(state)

    def discard(self, slot: Slot) -> None:
        """Forget an installed, never-activated slot (e.g. after its self-test failed)."""
        with self._lock:
            state = self.state
            if slot == state.active or (state.trial and state.trial.slot == slot):
                raise SlotError(f"slot {slot} is in use")
            self._forget(state, slot)
            self._save(state)

    # ---- switching --------------------------------------------------------------------------------------

    def begin_trial(self, slot: Slot, rollout_id: str) -> None:
        """Make the next start run ``slot`` on trial (the running model keeps running until then)."""
        with self._lock:
            state = self.state
            if state.slots.get(slot) is None or slot == state.active:
                raise SlotError(f"slot {slot} holds no new model to try")
            if state.trial is not None:
                raise SlotError(f"slot {state.trial.slot} is already on trial")
            state.trial = Trial(slot=slot, rollout_id=rollout_id)
            self._save(state)

    def confirm(self, slot: Slot) -> None:
        """The trial of ``slot`` passed its health check: it becomes active, the old active its fallback."""
        with self._lock:
            state = self.state
            trial = state.trial
            if trial is None or trial.slot != slot:
                raise SlotError(f"slot {slot} is not on trial")
            record = state.slots[slot]
            assert record is not None
            state.previous, state.active, state.trial = state.active, slot, None
            state.completed = trial.rollout_id
            self._queue(state, self._report(trial.rollout_id, record, "healthy"))
            self._save(state)

    def fail_trial(self, reason: str) -> None:
        """The trial failed (e.g. ``health_check_missed``): the next start runs the active model again."""
        with self._lock:
            state = self.state
            if state.trial is None:
                raise SlotError("no model is on trial")
            self._end_trial(state, reason)
            self._save(state)
