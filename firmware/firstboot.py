"""First boot: enroll from the bundle on the boot partition, then erase it (``wardsight device firstboot``).

Idempotent, and needs no privilege: on the image it runs as the agent's user (a systemd oneshot before the
agent) on a private copy of the boot partition's ``wardsight/`` that a root step staged in
``/run/wardsight-firstboot``; the root step after it removes the token from the boot partition itself once the
identity exists, and installs the SSH keys. By hand ``--boot-dir`` may be the boot partition itself.

- enrolled already: the identity is kept and nothing is enrolled again; a bundle found in the boot directory is
  erased unused; the firewall allowance is refreshed (the server's name may resolve to new addresses);
- a bundle (``<boot dir>/wardsight/enrollment.json``, :class:`wardsight.bundle.Bundle`): the firewall allowance
  for its server (:mod:`firmware.firewall`) is written before each attempt, rewritten only when the addresses
  changed, and the device enrolls, retrying with capped exponential backoff until the network and the server
  answer (one journal line per attempt). On success the identity is in the data directory, the bundle's SSH keys
  are written, and the bundle is overwritten with zeros and deleted; a refused token (used, expired, revoked,
  unknown) erases the bundle and the key and leaves the device down in state ``token_refused``;
- no bundle: state ``unprovisioned`` (or the earlier refusal stays shown).

Every "stays down" outcome exits 0 with no identity written. The state is ``<data dir>/device/firstboot.json``
({"state": ..., "reason": ..., "at": ...}); the agent's unit starts only when the identity exists. Tokens are
never written to the journal or the state.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.assembly import device_dir
from firmware.erase import erase_file
from firmware.firewall import Resolver, resolve, server_endpoint, write_fleet_rules
from firmware.identity import EnrollmentRefusedError, Identity, IdentityStore
from firmware.transport import UnreachableError
from wardsight.bundle import Bundle
from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

log = logging.getLogger("wardsight.device.firstboot")

BUNDLE = Path("wardsight") / "enrollment.json"
STATE_FILE = "firstboot.json"
DOWN_STATES = ("token_refused", "bundle_invalid", "enroll_failed")  # shown until a new bundle arrives


@dataclass(frozen=True)
class FirstBootPaths:
    boot_dir: Path
    data_dir: Path
    firewall_file: Path | None = None  # default <data dir>/firewall/fleet.nft
    ssh_keys_file: Path | None = None  # default <data dir>/ssh/authorized_keys

    @property
    def bundle(self) -> Path:
        return self.boot_dir / BUNDLE

    @property
    def device(self) -> Path:
        return device_dir(self.data_dir)

    @property
    def state(self) -> Path:
        return self.device / STATE_FILE

    @property
    def firewall(self) -> Path:
        return self.firewall_file or self.data_dir / "firewall" / "fleet.nft"

    @property
    def ssh_keys(self) -> Path:
        return self.ssh_keys_file or self.data_dir / "ssh" / "authorized_keys"


@dataclass(frozen=True)
class Backoff:
    first: float = 2.0
    cap: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.first * 2 ** min(attempt - 1, 30)))


class StatusLed:
    """A sysfs LED's ``brightness`` file: blinking while retrying, off once enrolled, on when the device is down."""

    def __init__(self, path: Path) -> None:
        self.path, self._failed = path, False

    def set(self, on: bool) -> None:
        try:
            self.path.write_text("1" if on else "0")
        except OSError as exc:
            if not self._failed:
                log.warning("cannot drive the status LED %s: %s", self.path, exc.strerror)
            self._failed = True

    def blink(self, seconds: float, sleep: Callable[[float], None]) -> None:
        on, left = True, seconds
        while left > 0:
            self.set(on)
            sleep(min(0.5, left))
            on, left = not on, left - 0.5


@dataclass
class FirstBootHooks:
    """What first boot needs from the outside: where its lines go, time, name resolution, LED, file owners."""

    say: Callable[[str], None] = print
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    resolve: Resolver = resolve
    led: StatusLed | None = None
    backoff: Backoff = field(default_factory=Backoff)
    agent_user: str | None = None  # owner of the device directory (only needed when first boot runs as root)
    ssh_user: str | None = None  # owner of the authorized_keys file (idem)

    def light(self, on: bool) -> None:
        if self.led is not None:
            self.led.set(on)

    def wait(self, seconds: float) -> None:
        if self.led is not None:
            self.led.blink(seconds, self.sleep)
        else:
            self.sleep(seconds)


def read_state(device: Path) -> dict[str, Any] | None:
    """The first boot state in the device directory ``device``, if any."""
    try:
        state = json.loads((device / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def why_down(data_dir: Path) -> str | None:
    """Why first boot left this device unenrolled (a refused token, an unusable bundle), or None."""
    device = device_dir(data_dir)
    state = read_state(device)
    if state is None or state.get("state") not in DOWN_STATES or (device / "identity.json").exists():
        return None
    return f"first boot: {state['state']}: {state.get('reason')}"


def _write_state(paths: FirstBootPaths, hooks: FirstBootHooks, state: str, **fields: Any) -> dict[str, Any]:
    body = {"state": state, **fields, "at": hooks.now()}
    write_file_atomically(paths.state, json.dumps(body, indent=2).encode(), mode=0o644)
    _chown(paths.state, hooks.agent_user)
    return body


def _chown(path: Path, user: str | None) -> None:
    """Give ``path`` to ``user``; no system call when it is theirs already (a sandbox may forbid chown)."""
    if user is None:
        return
    entry = pwd.getpwnam(user)
    now = os.lstat(path)
    if (now.st_uid, now.st_gid) != (entry.pw_uid, entry.pw_gid):
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _chown_tree(root: Path, user: str | None) -> None:
    if user is None:
        return
    _chown(root, user)
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            _chown(Path(folder) / name, user)


def check_user(user: str | None) -> None:
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise WardSightError(f"no such user: {user}") from None


def first_boot(
    paths: FirstBootPaths, configured_name: str, hooks: FirstBootHooks, *, name: str | None = None
) -> dict[str, Any]:
    """Enroll from the boot partition's bundle once, as ``name`` (else the bundle's, else ``configured_name``);
    returns the state written (or kept)."""
    check_user(hooks.agent_user)
    check_user(hooks.ssh_user)
    store = IdentityStore(paths.device)
    if store.identity_path.exists():
        return _already_enrolled(paths, store, hooks)
    if not paths.bundle.exists():
        return _no_bundle(paths, hooks)
    try:
        bundle = Bundle.load(paths.bundle)
        server_endpoint(bundle.server_url)
    except WardSightError as exc:
        hooks.say(f"first boot: the enrollment bundle {paths.bundle} is not usable: {exc}")
        return _stay_down(paths, hooks, "bundle_invalid", str(exc))
    return _enroll_until_answered(paths, store, bundle, name or bundle.name or configured_name, hooks)


def _stay_down(paths: FirstBootPaths, hooks: FirstBootHooks, state: str, reason: str, **fields: Any) -> dict[str, Any]:
    hooks.light(True)
    fix = "fix it and reboot, or write" if paths.bundle.exists() else "write"
    hooks.say(f"first boot: this device stays down ({state}): {fix} a new enrollment bundle to {paths.bundle}")
    return _write_state(paths, hooks, state, reason=reason, **fields)


def _no_bundle(paths: FirstBootPaths, hooks: FirstBootHooks) -> dict[str, Any]:
    earlier = read_state(paths.device)
    if earlier is not None and earlier.get("state") in DOWN_STATES:  # keep showing why
        hooks.light(True)
        why = f"{earlier['state']}: {earlier.get('reason')}"
        hooks.say(f"first boot: not enrolled ({why}); no new enrollment bundle at {paths.bundle}")
        return earlier
    hooks.say(f"first boot: not enrolled and no enrollment bundle at {paths.bundle}")
    return _stay_down(paths, hooks, "unprovisioned", f"no enrollment bundle at {paths.bundle}")


def _already_enrolled(paths: FirstBootPaths, store: IdentityStore, hooks: FirstBootHooks) -> dict[str, Any]:
    identity, _ = store.load()
    if _erase_bundle(paths, hooks):
        hooks.say(
            f"first boot: already enrolled as {identity.device_id}; the bundle found at {paths.bundle} was not used"
            " and is erased (a factory reset job lets the device enroll again)"
        )
    _allow(paths, identity.server_url, hooks, required=False)
    hooks.light(False)
    state = read_state(paths.device)
    if state is None or state.get("state") != "enrolled" or state.get("device_id") != identity.device_id:
        state = _enrolled_state(paths, hooks, identity, None)
    hooks.say(f"first boot: enrolled as {identity.device_id} in room {identity.room}; nothing to do")
    return state


def _enrolled_state(
    paths: FirstBootPaths, hooks: FirstBootHooks, identity: Identity, status: str | None
) -> dict[str, Any]:
    fields = {"device_id": identity.device_id, "room": identity.room, "server_url": identity.server_url}
    return _write_state(paths, hooks, "enrolled", **fields, **({"status": status} if status else {}))


def _allow(paths: FirstBootPaths, url: str, hooks: FirstBootHooks, *, required: bool) -> None:
    """Write the firewall allowance for ``url``; UnreachableError (name not resolvable yet) when ``required``."""
    try:
        if write_fleet_rules(paths.firewall, url, hooks.resolve):
            hooks.say(f"first boot: firewall allowance for {url} written to {paths.firewall}")
    except UnreachableError as exc:
        if required:
            raise
        hooks.say(f"first boot: {exc}; the firewall allowance in {paths.firewall} is kept as it was")


def _write_ssh_keys(paths: FirstBootPaths, bundle: Bundle, hooks: FirstBootHooks) -> None:
    if not bundle.ssh_authorized_keys:
        return
    path = paths.ssh_keys
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o755)
        path.parent.chmod(0o755)  # sshd reads the file as the user logging in: the directory must be passable
    write_file_atomically(path, ("\n".join(bundle.ssh_authorized_keys) + "\n").encode(), mode=0o600)
    _chown(path, hooks.ssh_user)
    hooks.say(f"first boot: {len(bundle.ssh_authorized_keys)} SSH public key(s) written to {path}")


def _erase_bundle(paths: FirstBootPaths, hooks: FirstBootHooks) -> bool:
    try:
        return erase_file(paths.bundle)
    except WardSightError as exc:  # a read-only boot partition: say so, the identity is safe anyway
        hooks.say(f"first boot: {exc}; remove the enrollment bundle by hand, it holds a token")
        return False


def _enroll_until_answered(
    paths: FirstBootPaths, store: IdentityStore, bundle: Bundle, name: str, hooks: FirstBootHooks
) -> dict[str, Any]:
    url, attempt = bundle.server_url, 0
    while True:
        attempt += 1
        try:
            _allow(paths, url, hooks, required=True)
            identity, status = store.enroll(bundle, name)
        except UnreachableError as exc:
            delay = hooks.backoff.delay(attempt)
            hooks.say(f"first boot: enrollment attempt {attempt} with {url}: {exc}; next attempt in {delay:.0f} s")
            _write_state(paths, hooks, "waiting", reason=str(exc), attempt=attempt, server_url=url)
            hooks.wait(delay)
            continue
        except EnrollmentRefusedError as exc:
            return _refused(paths, store, bundle, hooks, exc)
        except WardSightError as exc:  # e.g. a name the server would refuse: the bundle is kept for a retry
            hooks.say(f"first boot: cannot enroll with {url}: {exc}")
            return _stay_down(paths, hooks, "enroll_failed", str(exc), server_url=url)
        return _enrolled(paths, bundle, identity, status, hooks)


def _enrolled(
    paths: FirstBootPaths, bundle: Bundle, identity: Identity, status: str, hooks: FirstBootHooks
) -> dict[str, Any]:
    state = _enrolled_state(paths, hooks, identity, status)
    _chown_tree(paths.device, hooks.agent_user)
    _write_ssh_keys(paths, bundle, hooks)  # only now: a refused or forged bundle leaves no keys to install
    erased = _erase_bundle(paths, hooks)
    hooks.light(False)
    hooks.say(
        f"first boot: enrolled as {identity.device_id} in room {identity.room} at {identity.server_url} ({status})"
        + ("; the enrollment bundle is erased" if erased else "")
    )
    if status == "pending":
        hooks.say("first boot: an operator must approve this device in the console before it is trusted")
    return state


def _refused(
    paths: FirstBootPaths, store: IdentityStore, bundle: Bundle, hooks: FirstBootHooks, exc: EnrollmentRefusedError
) -> dict[str, Any]:
    hooks.say(f"first boot: the fleet server refused this device's enrollment token: {exc.reason} (HTTP {exc.status})")
    erase_file(store.key_path)  # the next bundle enrolls a new key (this one may be known to the server)
    _erase_bundle(paths, hooks)  # its token is spent; a new bundle is needed either way
    token_id = bundle.token.split(".")[1]  # the public half (the server logs it too), never the secret
    fields = {"http_status": exc.status, "token_id": token_id, "server_url": bundle.server_url}
    return _stay_down(paths, hooks, "token_refused", exc.reason, **fields)


def refresh_allowance(data_dir: Path, resolver: Resolver = resolve) -> None:
    """At every agent start: rewrite the fleet allowance (``<data dir>/firewall/fleet.nft``) when the server's
    name now resolves to other addresses. Only where first boot wrote one (a device image); never fatal."""
    paths = FirstBootPaths(boot_dir=data_dir, data_dir=data_dir)
    if not paths.firewall.is_file():
        return
    try:
        identity, _ = IdentityStore(paths.device).load()
        if write_fleet_rules(paths.firewall, identity.server_url, resolver):
            log.info("firewall allowance for %s refreshed in %s", identity.server_url, paths.firewall)
    except (WardSightError, OSError) as exc:
        log.warning("the firewall allowance was not refreshed: %s", exc)
