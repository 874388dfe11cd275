"""``wardsight ota``: the hospital's offline TUF keys and what only they may sign.

The fleet server holds the *online* snapshot and timestamp keys. The *root* and *targets* keys stay on a
machine the hospital controls (ideally offline); these commands use them there and talk to the server
over its API (an admin API token; https pinned to the fleet CA, plain http only with ``--insecure-http``):

- ``keys``: make ``root.key`` and ``targets.key`` (Ed25519, PKCS#8 PEM, 0600; ``--encrypt`` asks for a
  passphrase) in a directory; ``new-key`` makes one more (for a rotation).
- ``init``: root v1 (root and targets keys from the directory, the server's online keys from
  ``GET /api/v1/ota/online-keys``), signed with the root key, and an empty targets v1, signed with the
  targets key; the server checks both and signs the first snapshot and timestamp.
- ``upload``: stage a model package in the library (no key needed; it is not installable yet).
- ``publish``: upload the package, then sign targets metadata that adds it (length and sha256 computed
  here, from the file the hospital holds) and send it; devices can then install it.
- ``withdraw``: sign targets metadata without a version.
- ``rotate-root``: root v(N+1) signed by the current root key and the new one (new root and/or targets
  key; the server's current online keys), plus targets re-signed with a new targets key.
- ``status``: the repository's versions and expiry dates.

Before signing on top of the server's targets metadata the signer checks that the metadata carries a valid
signature by its own targets key (a server cannot slip a target in to be blessed) and is not older than the
last version these keys signed (``ota-state.json`` in the keys directory; a server cannot make the hospital
drop newer models by replaying old metadata).

The functions behind the commands (:func:`generate_keys`, :func:`init_repository`, :func:`publish`,
:func:`withdraw`, :func:`rotate_root`, :func:`upload_package`) take a :class:`Server` and a keys directory,
so tests and tools can call them directly.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.signer import CryptoSigner, Key, SSlibKey
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError

from wardsight import modelpkg
from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically
from wardsight.tls import pinned_context
from wardsight.wire import target_path

ROOT_KEY = "root.key"
TARGETS_KEY = "targets.key"
STATE_FILE = "ota-state.json"
RETIRED_DIR = "retired"
DEFAULT_ROOT_DAYS = 365
DEFAULT_TARGETS_DAYS = 365
MAX_REPLY_BYTES = 6_000_000

Passphrase = bytes | Callable[[Path], bytes] | None


class OtaCliError(WardSightError):
    """A refused or impossible OTA signing step (the message says what to do)."""


# ---- keys ---------------------------------------------------------------------------------------------


def generate_key(path: Path, passphrase: bytes | None = None) -> str:
    """Write a new Ed25519 key (PKCS#8 PEM, 0600; encrypted when ``passphrase``); return its TUF key id."""
    if path.exists():
        raise OtaCliError(f"{path} exists: refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_file_atomically(path, pem)
    return SSlibKey.from_crypto(key.public_key()).keyid


def generate_keys(out: Path, passphrase: bytes | None = None) -> dict[str, str]:
    """Make ``root.key`` and ``targets.key`` in ``out``; return {role: key id}."""
    for name in (ROOT_KEY, TARGETS_KEY):
        if (out / name).exists():
            raise OtaCliError(f"{out / name} exists: refusing to overwrite a key")
    return {role: generate_key(out / name, passphrase) for role, name in (("root", ROOT_KEY), ("targets", TARGETS_KEY))}


def load_signer(path: Path, passphrase: Passphrase = None) -> CryptoSigner:
    """A signer for the Ed25519 key in ``path``; ``passphrase`` (bytes, or a function asked only when the
    key is encrypted) unlocks an encrypted one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OtaCliError(f"cannot read key {path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        if passphrase is None:
            raise OtaCliError(f"{path} is encrypted: a passphrase is needed") from None
        secret = passphrase(path) if callable(passphrase) else passphrase
        try:
            key = serialization.load_pem_private_key(data, password=secret)
        except (TypeError, ValueError):
            raise OtaCliError(f"cannot unlock {path}: wrong passphrase or damaged key") from None
    except ValueError as exc:
        raise OtaCliError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise OtaCliError(f"{path} is not an Ed25519 key")
    return CryptoSigner(key, SSlibKey.from_crypto(key.public_key()))


# ---- the server ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """The fleet server's API as an admin sees it."""

    url: str
    api_token: str | None = None
    ca_pem: str | None = None  # the fleet CA (PEM) for https
    insecure_http: bool = False
    timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.url.startswith("https://"):
            if not self.ca_pem:
                raise OtaCliError("an https server needs the fleet CA certificate (--ca)")
        elif self.url.startswith("http://"):
            if not self.insecure_http:
                raise OtaCliError(f"{self.url} is plain HTTP; allowed only with --insecure-http (development)")
        else:
            raise OtaCliError(f"server URL must start with https:// (or http:// for development), got '{self.url}'")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | BinaryIO | None = None,
        content_type: str | None = None,
        length: int | None = None,
    ) -> bytes:
        headers = {"Accept": "application/json"}
        if self.api_token:
            headers["Authorization"] = f"Bearer {self.api_token}"
        if content_type:
            headers["Content-Type"] = content_type
        if length is not None:
            headers["Content-Length"] = str(length)
        url = self.url.rstrip("/") + path
        req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - scheme checked
        context = pinned_context(self.ca_pem) if self.url.startswith("https://") and self.ca_pem else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=context) as resp:  # noqa: S310
                return bytes(resp.read(MAX_REPLY_BYTES))
        except urllib.error.HTTPError as exc:
            raw = exc.read(64 * 1024)
            try:
                reason = json.loads(raw).get("error", "")
            except (ValueError, AttributeError):
                reason = raw[:200].decode("utf-8", "replace")
            raise OtaCliError(f"{method} {path}: HTTP {exc.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OtaCliError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None

    def get_json(self, path: str) -> Any:
        return _json(self.request("GET", path), path)

    def post_json(self, path: str, body: Any) -> Any:
        return _json(self.request("POST", path, json.dumps(body).encode(), "application/json"), path)


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise OtaCliError(f"{what}: the server's answer is not JSON") from None


def _metadata(raw: bytes, kind: type[Root] | type[Targets], what: str) -> Metadata[Any]:
    try:
        md: Metadata[Any] = Metadata.from_bytes(raw)
    except DeserializationError as exc:
        raise OtaCliError(f"{what} is not TUF metadata: {exc}") from None
    if not isinstance(md.signed, kind):
        raise OtaCliError(f"{what} is {md.signed.type} metadata, not {kind.type}")
    return md


# ---- local state: what these keys signed last -----------------------------------------------------------


def _state(keys: Path) -> dict[str, int]:
    try:
        data = json.loads((keys / STATE_FILE).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise OtaCliError(f"cannot read {keys / STATE_FILE}: {exc}") from None
    return {k: int(v) for k, v in data.items() if k in ("root_version", "targets_version")}


def _save_state(keys: Path, **versions: int) -> None:
    state = _state(keys)
    state.update(versions)
    write_file_atomically(keys / STATE_FILE, json.dumps(state, indent=2, sort_keys=True).encode())


def _check_not_older(keys: Path, role: str, version: int) -> None:
    signed = _state(keys).get(f"{role}_version")
    if signed is not None and version < signed:
        raise OtaCliError(
            f"the server offers {role} version {version} but these keys last signed version {signed}: "
            "its repository was rolled back or replaced; refusing to sign on top of it"
        )


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


# ---- commands as functions ----------------------------------------------------------------------------


def online_keys(server: Server) -> dict[str, Key]:
    """The server's snapshot and timestamp public keys."""
    body = server.get_json("/api/v1/ota/online-keys")
    try:
        return {
            role: Key.from_dict(body[role]["keyid"], copy.deepcopy(body[role]["key"]))
            for role in ("snapshot", "timestamp")
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise OtaCliError(f"the server's online keys are malformed: {exc}") from None


def init_repository(
    keys: Path,
    server: Server,
    *,
    now: datetime | None = None,
    root_days: int = DEFAULT_ROOT_DAYS,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Create the repository on the server: root v1 and an empty targets v1, signed here."""
    at = _now(now)
    root_signer = load_signer(keys / ROOT_KEY, passphrase)
    targets_signer = load_signer(keys / TARGETS_KEY, passphrase)
    online = online_keys(server)
    offline_ids = {root_signer.public_key.keyid, targets_signer.public_key.keyid}
    if offline_ids & {key.keyid for key in online.values()}:
        raise OtaCliError("the server's online keys are the same as an offline key")
    root = Root(version=1, expires=at + timedelta(days=root_days), consistent_snapshot=False)
    root.add_key(root_signer.public_key, "root")
    root.add_key(targets_signer.public_key, "targets")
    for role, key in online.items():
        root.add_key(key, role)
    root_md = Metadata(root)
    root_md.sign(root_signer)
    targets_md = Metadata(Targets(version=1, expires=at + timedelta(days=targets_days)))
    targets_md.sign(targets_signer)
    summary: dict[str, Any] = server.post_json(
        "/api/v1/ota/root", {"root": root_md.to_dict(), "targets": targets_md.to_dict()}
    )
    _save_state(keys, root_version=1, targets_version=1)
    return summary


def upload_package(package: Path, server: Server) -> dict[str, Any]:
    """Stage a package in the server's library (no signature: not installable until published)."""
    modelpkg.read_manifest(package)  # refuse locally what the server would refuse
    size = package.stat().st_size
    with open(package, "rb") as fh:
        raw = server.request("POST", "/api/v1/models", fh, "application/octet-stream", size)
    result: dict[str, Any] = _json(raw, "/api/v1/models")
    return result


def target_info(package: Path) -> TargetFile:
    """The TargetFile for a package, computed from the local file: path, length, sha256, and a ``custom``
    description (name, version, task, minimum agent version, builds) devices can read before downloading."""
    manifest = modelpkg.read_manifest(package)
    info = TargetFile.from_file(target_path(manifest.name, manifest.version), str(package), ["sha256"])
    info.unrecognized_fields["custom"] = {
        "name": manifest.name,
        "version": manifest.version,
        "task": manifest.task,
        "min_agent_version": manifest.min_agent_version,
        "builds": [{"backend": b.backend, "runtime": b.runtime, "hardware": b.hardware} for b in manifest.builds],
    }
    return info


def _current_targets(keys: Path, server: Server, signer: CryptoSigner) -> Metadata[Targets]:
    """The served targets metadata, if these keys signed it and it is not older than what they signed."""
    current: Metadata[Targets] = _metadata(server.request("GET", "/tuf/metadata/targets.json"), Targets, "targets.json")
    keyid = signer.public_key.keyid
    signature = current.signatures.get(keyid)
    try:
        if signature is None:
            raise UnverifiedSignatureError("no signature by this key")
        signer.public_key.verify_signature(signature, current.signed_bytes)
    except UnverifiedSignatureError:
        raise OtaCliError(
            f"the server's targets.json is not signed by this targets key ({keyid[:12]}): refusing to sign its "
            "contents (a rotated key, another repository, or a tampered server)"
        ) from None
    _check_not_older(keys, "targets", current.signed.version)
    return current


def resign_targets(
    keys: Path,
    server: Server,
    change: Callable[[Targets], None],
    *,
    now: datetime | None = None,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Fetch and check the served targets, apply ``change``, bump the version, sign, send."""
    signer = load_signer(keys / TARGETS_KEY, passphrase)
    current = _current_targets(keys, server, signer)
    targets = current.signed
    change(targets)
    targets.version += 1
    targets.expires = _now(now) + timedelta(days=targets_days)
    md = Metadata(targets)
    md.sign(signer)
    summary: dict[str, Any] = server.post_json("/api/v1/ota/targets", md.to_dict())
    _save_state(keys, targets_version=targets.version)
    return summary


def publish(
    package: Path,
    keys: Path,
    server: Server,
    *,
    now: datetime | None = None,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Upload ``package`` and publish it: targets metadata listing it, signed with the offline targets key."""
    info = target_info(package)
    staged = upload_package(package, server)
    if (staged.get("length"), staged.get("sha256")) != (info.length, info.hashes["sha256"]):
        raise OtaCliError(f"the server stored {info.path} with another length/sha256 than the local file")

    def add(targets: Targets) -> None:
        listed = targets.targets.get(info.path)
        if listed is not None:
            same = (listed.length, listed.hashes) == (info.length, info.hashes)
            raise OtaCliError(f"{info.path} is already published" + ("" if same else " with other contents"))
        targets.targets[info.path] = info

    return resign_targets(keys, server, add, now=now, targets_days=targets_days, passphrase=passphrase)


def withdraw(
    name: str,
    version: str,
    keys: Path,
    server: Server,
    *,
    now: datetime | None = None,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Sign targets metadata that no longer lists ``name`` ``version`` (devices will not install it)."""
    path = target_path(name, version)

    def remove(targets: Targets) -> None:
        if targets.targets.pop(path, None) is None:
            raise OtaCliError(f"{path} is not published")

    return resign_targets(keys, server, remove, now=now, targets_days=targets_days, passphrase=passphrase)


def _retire(keys: Path, name: str, version: int, new_key: Path) -> None:
    """Keep the replaced key under retired/ and make the new one the directory's current key."""
    current = keys / name
    retired = keys / RETIRED_DIR / f"{Path(name).stem}-until-root-v{version}.key"
    write_file_atomically(retired, current.read_bytes())
    write_file_atomically(current, new_key.read_bytes())


def rotate_root(
    keys: Path,
    server: Server,
    *,
    new_root_key: Path | None = None,
    new_targets_key: Path | None = None,
    now: datetime | None = None,
    root_days: int = DEFAULT_ROOT_DAYS,
    targets_days: int = DEFAULT_TARGETS_DAYS,
    passphrase: Passphrase = None,
) -> dict[str, Any]:
    """Sign root v(N+1) with the current root key (and the new one), trusting the server's current online
    keys and optionally a new root and/or targets key; with a new targets key the targets metadata is
    re-signed with it. Without new keys this renews the root's expiry. On success the keys directory's
    ``root.key``/``targets.key`` become the new keys (the old ones move to ``retired/``)."""
    at = _now(now)
    root_signer = load_signer(keys / ROOT_KEY, passphrase)
    current: Metadata[Root] = _metadata(server.request("GET", "/api/v1/ota/root"), Root, "the server's root")
    try:
        current.signed.verify_delegate("root", current.signed_bytes, current.signatures)
    except UnsignedMetadataError:
        raise OtaCliError("the server's root is not validly signed by its own root keys") from None
    if root_signer.public_key.keyid not in current.signed.roles["root"].keyids:
        raise OtaCliError(f"{keys / ROOT_KEY} is not a root key of the server's root v{current.signed.version}")
    _check_not_older(keys, "root", current.signed.version)
    new_root_signer = load_signer(new_root_key, passphrase) if new_root_key else None
    new_targets_signer = load_signer(new_targets_key, passphrase) if new_targets_key else None

    root = Root.from_dict(copy.deepcopy(current.signed.to_dict()))
    root.version += 1
    root.expires = at + timedelta(days=root_days)
    replacements: dict[str, Key] = dict(online_keys(server))
    if new_root_signer is not None:
        replacements["root"] = new_root_signer.public_key
    if new_targets_signer is not None:
        replacements["targets"] = new_targets_signer.public_key
    for role, key in replacements.items():
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(key, role)
    md = Metadata(root)
    md.sign(root_signer)
    if new_root_signer is not None:
        md.sign(new_root_signer, append=True)
    body: dict[str, Any] = {"root": md.to_dict()}
    if new_targets_signer is not None:
        served: Metadata[Targets] = _metadata(
            server.request("GET", "/tuf/metadata/targets.json"), Targets, "targets.json"
        )
        try:
            current.signed.verify_delegate("targets", served.signed_bytes, served.signatures)
        except UnsignedMetadataError:
            raise OtaCliError("the server's targets.json is not signed by the current root's targets key") from None
        _check_not_older(keys, "targets", served.signed.version)
        targets = served.signed
        targets.version += 1
        targets.expires = at + timedelta(days=targets_days)
        targets_md = Metadata(targets)
        targets_md.sign(new_targets_signer)
        body["targets"] = targets_md.to_dict()
    summary: dict[str, Any] = server.post_json("/api/v1/ota/root", body)
    if new_root_key is not None:
        _retire(keys, ROOT_KEY, root.version, new_root_key)
    if new_targets_key is not None:
        _retire(keys, TARGETS_KEY, root.version, new_targets_key)
        _save_state(keys, targets_version=summary.get("targets_version", 0))
    _save_state(keys, root_version=root.version)
    return summary


# ---- click --------------------------------------------------------------------------------------------


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WardSightError as exc:
            raise click.ClickException(str(exc)) from None


def _prompt_passphrase(path: Path) -> bytes:
    return str(click.prompt(f"Passphrase for {path}", hide_input=True)).encode()


def _server_options(function: Callable[..., Any]) -> Callable[..., Any]:
    options = (
        click.option("--server", "url", required=True, envvar="WARDSIGHT_FLEET_URL", help="Fleet server URL."),
        click.option(
            "--api-token", envvar="WARDSIGHT_API_TOKEN", default=None, help="Admin API token (or $WARDSIGHT_API_TOKEN)."
        ),
        click.option(
            "--ca",
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            default=None,
            envvar="WARDSIGHT_FLEET_CA",
            help="The fleet CA certificate (PEM) to pin for https (or $WARDSIGHT_FLEET_CA).",
        ),
        click.option("--insecure-http", is_flag=True, help="Development only: allow a plain http:// server."),
    )
    for option in reversed(options):
        function = option(function)
    return function


def _server(url: str, api_token: str | None, ca: Path | None, insecure_http: bool) -> Server:
    return Server(url, api_token, ca.read_text() if ca else None, insecure_http)


keys_option = click.option(
    "--keys",
    "keys_dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Directory holding root.key and targets.key.",
)


@click.group("ota", cls=_Group)
def ota() -> None:
    """Signed model updates (TUF): the hospital's offline root and targets keys.

    \b
    Example:
        wardsight ota keys --out /media/offline/wardsight-keys
        wardsight ota init --keys /media/offline/wardsight-keys --server https://fleet:8765 --ca fleet-ca.pem
        wardsight ota publish movenet-1.1.wsm --keys /media/offline/wardsight-keys --server https://fleet:8765 \\
            --ca fleet-ca.pem
    """


@ota.command("keys")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Directory for the keys.")
@click.option("--encrypt", is_flag=True, help="Encrypt the keys with a passphrase (asked for twice).")
def keys_command(out: Path, encrypt: bool) -> None:
    """Make the offline root and targets keys (0600 files; keep them off the server).

    \b
    Example:
        wardsight ota keys --out /media/offline/wardsight-keys --encrypt
    """
    secret = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True).encode() if encrypt else None
    for role, keyid in generate_keys(out, secret).items():
        click.echo(f"{role}: {out / (role + '.key')} (key id {keyid})")


@ota.command("new-key")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--encrypt", is_flag=True, help="Encrypt the key with a passphrase (asked for twice).")
def new_key_command(path: Path, encrypt: bool) -> None:
    """Make one more Ed25519 key, e.g. the next root key for rotate-root.

    \b
    Example:
        wardsight ota new-key /media/offline/root-2026.key
    """
    secret = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True).encode() if encrypt else None
    click.echo(f"{path} (key id {generate_key(path, secret)})")


@ota.command("init")
@keys_option
@_server_options
@click.option("--root-days", type=click.IntRange(1, 3660), default=DEFAULT_ROOT_DAYS, help="Root lifetime (days).")
@click.option("--targets-days", type=click.IntRange(1, 3660), default=DEFAULT_TARGETS_DAYS, help="Targets lifetime.")
def init_command(
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    root_days: int,
    targets_days: int,
) -> None:
    """Create the server's TUF repository (root v1, empty targets v1) signed with the offline keys.

    \b
    Example:
        wardsight ota init --keys ./keys --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = _server(url, api_token, ca, insecure_http)
    summary = init_repository(
        keys_dir, server, root_days=root_days, targets_days=targets_days, passphrase=_prompt_passphrase
    )
    click.echo(json.dumps(summary))


@ota.command("upload")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_server_options
def upload_command(package: Path, url: str, api_token: str | None, ca: Path | None, insecure_http: bool) -> None:
    """Stage a model package in the library (published only once signed with 'publish').

    \b
    Example:
        wardsight ota upload movenet-1.1.wsm --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    click.echo(json.dumps(upload_package(package, _server(url, api_token, ca, insecure_http))))


@ota.command("publish")
@click.argument("package", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@keys_option
@_server_options
@click.option("--targets-days", type=click.IntRange(1, 3660), default=DEFAULT_TARGETS_DAYS, help="Targets lifetime.")
def publish_command(
    package: Path,
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    targets_days: int,
) -> None:
    """Upload a model package and sign targets metadata that publishes it.

    \b
    Example:
        wardsight ota publish movenet-1.1.wsm --keys ./keys --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = _server(url, api_token, ca, insecure_http)
    summary = publish(package, keys_dir, server, targets_days=targets_days, passphrase=_prompt_passphrase)
    click.echo(json.dumps(summary))


@ota.command("withdraw")
@click.argument("name")
@click.argument("version")
@keys_option
@_server_options
def withdraw_command(
    name: str, version: str, keys_dir: Path, url: str, api_token: str | None, ca: Path | None, insecure_http: bool
) -> None:
    """Sign targets metadata without a model version (devices stop offering to install it).

    \b
    Example:
        wardsight ota withdraw movenet 1.1 --keys ./keys --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = _server(url, api_token, ca, insecure_http)
    click.echo(json.dumps(withdraw(name, version, keys_dir, server, passphrase=_prompt_passphrase)))


@ota.command("rotate-root")
@keys_option
@_server_options
@click.option("--new-root-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--new-targets-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None)
@click.option("--root-days", type=click.IntRange(1, 3660), default=DEFAULT_ROOT_DAYS, help="Root lifetime (days).")
def rotate_root_command(
    keys_dir: Path,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    new_root_key: Path | None,
    new_targets_key: Path | None,
    root_days: int,
) -> None:
    """Sign the next root version: new root/targets keys, the server's current online keys, a new expiry.

    \b
    Example:
        wardsight ota new-key ./root-next.key
        wardsight ota rotate-root --keys ./keys --new-root-key ./root-next.key \\
            --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    server = _server(url, api_token, ca, insecure_http)
    summary = rotate_root(
        keys_dir,
        server,
        new_root_key=new_root_key,
        new_targets_key=new_targets_key,
        root_days=root_days,
        passphrase=_prompt_passphrase,
    )
    click.echo(json.dumps(summary))


@ota.command("status")
@_server_options
def status_command(url: str, api_token: str | None, ca: Path | None, insecure_http: bool) -> None:
    """Show the repository's role versions, expiry dates and key ids (viewer token is enough).

    \b
    Example:
        wardsight ota status --server https://fleet.example:8765 --ca fleet-ca.pem
    """
    click.echo(json.dumps(_server(url, api_token, ca, insecure_http).get_json("/api/v1/ota/status"), indent=2))


__all__ = [
    "Server",
    "generate_key",
    "generate_keys",
    "init_repository",
    "load_signer",
    "ota",
    "publish",
    "resign_targets",
    "rotate_root",
    "start_rollout",
    "target_info",
    "upload_package",
    "withdraw",
]


@ota.command("package")
@click.option("--name", required=True, help="Model name, e.g. movenet-multipose.")
@click.option("--version", "version", required=True, help="Dotted numeric version, e.g. 1.2.")
@click.option("--task", required=True, help="What the model does, e.g. pose.")
@click.option("--license", "licence", required=True, help="The model's licence, e.g. Apache-2.0.")
@click.option("--min-agent-version", default="0.1", show_default=True, help="Oldest agent that can run it.")
@click.option(
    "--build",
    "builds",
    multiple=True,
    required=True,
    help="BACKEND:RUNTIME:DECODER:FILE[:HARDWARE], once per build (e.g. cpu:litert:movenet_multipose:m.tflite).",
)
@click.option("--input", "inputs", multiple=True, help="KEY=VALUE input setting for every build (long_side=256).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .wsm to write.")
def package_command(
    name: str,
    version: str,
    task: str,
    licence: str,
    min_agent_version: str,
    builds: tuple[str, ...],
    inputs: tuple[str, ...],
    out: Path,
) -> None:
    """Build a model package (.wsm): a manifest and one file per backend build, checked by sha256.

    \b
    Example:
        wardsight ota package --name movenet-multipose --version 1.1 --task pose --license Apache-2.0 \\
            --build cpu:litert:movenet_multipose:movenet.tflite \\
            --build hailo:hailort:yolov8_pose:yolov8s_pose.hef:hailo8l \\
            --input long_side=256 --input multiple=32 --input dtype=uint8 --out movenet-1.1.wsm
    """
    settings: dict[str, int | float | str] = {}
    for item in inputs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--input {item!r}: expected KEY=VALUE")
        settings[key] = int(value) if value.isdigit() else value
    parsed, files = [], {}
    for spec in builds:
        parts = spec.split(":")
        if len(parts) not in (4, 5):
            raise click.UsageError(f"--build {spec!r}: expected BACKEND:RUNTIME:DECODER:FILE[:HARDWARE]")
        backend, runtime, decoder, file = parts[:4]
        path = Path(file)
        if not path.is_file():
            raise click.ClickException(f"no such model file: {path}")
        digest, size = modelpkg.describe_file(path)
        try:
            parsed.append(
                modelpkg.Build.model_validate(
                    {
                        "backend": backend,
                        "runtime": runtime,
                        "file": path.name,
                        "sha256": digest,
                        "size": size,
                        "input": settings,
                        "decoder": decoder,
                        "hardware": parts[4] if len(parts) == 5 else None,
                    }
                )
            )
        except ValueError as exc:
            raise click.ClickException(f"--build {spec!r}: {exc}") from None
        files[path.name] = path
    try:
        manifest = modelpkg.Manifest(
            name=name, version=version, task=task, license=licence, min_agent_version=min_agent_version, builds=parsed
        )
        modelpkg.write_package(out, manifest, files)
    except (ValueError, modelpkg.PackageError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out} ({len(parsed)} build(s), sha256 {modelpkg.describe_file(out)[0]})")


def start_rollout(
    server: Server,
    model: str,
    version: str,
    selector: dict[str, Any],
    *,
    groups: tuple[float, ...] = (100.0,),
    success_threshold: float = 1.0,
    max_failures: int = 0,
    timeout_s: int = 3600,
) -> dict[str, Any]:
    """``POST /api/v1/rollouts`` (operator role): offer a published version to the selected devices."""
    body = {
        "model": model,
        "version": version,
        "selector": selector,
        "groups": [{"percent": p} for p in groups],
        "success_threshold": success_threshold,
        "error_threshold": {"count": max_failures},
        "in_progress_timeout_s": timeout_s,
    }
    view = server.post_json("/api/v1/rollouts", body)
    if not isinstance(view, dict):
        raise OtaCliError("the server's answer to the rollout is not an object")
    return view


@ota.command("rollout")
@click.argument("model")
@click.argument("version")
@_server_options
@click.option("--site", default=None, help="Only devices of this site.")
@click.option("--ward", default=None, help="Only devices of this ward.")
@click.option("--room", default=None, help="Only the device(s) of this room.")
@click.option("--tag", "tags", multiple=True, help="Only devices with this tag (repeatable: all must match).")
@click.option(
    "--group",
    "groups",
    type=click.FloatRange(0, 100, min_open=True),
    multiple=True,
    help="A group's size in percent of the selection, in order (repeatable); a last group takes the rest.",
)
@click.option("--success", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True,
              help="Fraction of a group that must report healthy before the next starts.")  # fmt: skip
@click.option("--max-failures", type=click.IntRange(0), default=0, show_default=True,
              help="Failures across the rollout it tolerates before it stops.")  # fmt: skip
@click.option("--timeout", "timeout_s", type=click.IntRange(60, 7 * 24 * 3600), default=3600, show_default=True,
              help="Seconds a device may stay in one step before it counts as failed.")  # fmt: skip
def rollout_command(
    model: str,
    version: str,
    url: str,
    api_token: str | None,
    ca: Path | None,
    insecure_http: bool,
    site: str | None,
    ward: str | None,
    room: str | None,
    tags: tuple[str, ...],
    groups: tuple[float, ...],
    success: float,
    max_failures: int,
    timeout_s: int,
) -> None:
    """Start a staged rollout of a published model version (needs an operator or admin API token).

    \b
    Example:
        wardsight ota rollout movenet-multipose 1.1 --ward 3B --group 10 --group 100 --server https://fleet:8765 \\
            --ca fleet-ca.pem
    """
    selector: dict[str, Any] = {k: v for k, v in (("site", site), ("ward", ward), ("room", room)) if v}
    if tags:
        selector["tags"] = list(tags)
    sizes = groups if groups and groups[-1] == 100 else (*groups, 100.0)
    view = start_rollout(
        _server(url, api_token, ca, insecure_http), model, version, selector,
        groups=sizes, success_threshold=success, max_failures=max_failures, timeout_s=timeout_s,
    )  # fmt: skip
    click.echo(f"rollout {view['id']}: {view['model']} {view['version']} to {view['devices_total']} device(s), "
               f"{view['status']}")  # fmt: skip
    for device in view.get("devices", []):
        click.echo(f"  {device['device_id']}: {device.get('explain', device['status'])}")
