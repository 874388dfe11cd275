"""The enrollment bundle: what a new device needs to find, trust and join its fleet.

Written (mode 0600) by ``wardsight fleet token create --bundle`` or ``wardsight provision bundle`` onto the
SD card; read by ``wardsight device enroll --bundle``. It holds the server URL, a one-time token and the
fleet CA certificate that the device pins. Plain-HTTP servers are refused unless the bundle says, explicitly,
that this is a development setup. Optional: the OTA repository's TUF root, the device's ``name`` (used by
``wardsight device firstboot`` instead of the configured one) and ``ssh_authorized_keys`` (public keys, one
``type base64 [comment]`` line each, which first boot writes for the image's key-only SSH); bundles without them
read as before.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path

from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically
from wardsight.wire import IDENTIFIER_PATTERN

PEM_CERT = "-----BEGIN CERTIFICATE-----"
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_SSH_KEY = re.compile(r"(?P<type>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,2})(?: [\x20-\x7e]{0,200})?")
MAX_SSH_KEYS = 32


def check_ssh_key(line: str) -> str:
    """``line`` if it is one plain public key line (no options, no line breaks) whose blob names its type."""
    match = _SSH_KEY.fullmatch(line)
    if match is None or match["type"] not in SSH_KEY_TYPES:
        raise WardSightError(f"ssh_authorized_keys: {line[:30]!r}... is not a public key line 'TYPE BASE64 [comment]'")
    try:
        blob = base64.b64decode(match["blob"], validate=True)
    except (binascii.Error, ValueError):
        raise WardSightError("ssh_authorized_keys: a key's base64 is damaged") from None
    name = match["type"].encode()
    if blob[:4] != len(name).to_bytes(4, "big") or blob[4 : 4 + len(name)] != name:
        raise WardSightError(f"ssh_authorized_keys: a {match['type']} line holds another kind of key")
    return line


@dataclass(frozen=True)
class Bundle:
    server_url: str
    token: str
    ca_pem: str | None = None  # required for https
    insecure_http: bool = False  # required for http
    tuf_root: str | None = None  # the OTA repository's trusted root.json (TUF), when the fleet has one
    name: str | None = None  # the device's name in the console (e.g. from a ward's roster); else its own
    ssh_authorized_keys: tuple[str, ...] = ()  # public keys for the device image's key-only SSH

    def check(self) -> Bundle:
        url = self.server_url
        if url.startswith("https://"):
            if not self.ca_pem or PEM_CERT not in self.ca_pem:
                raise WardSightError("an https server needs the fleet CA certificate (PEM) in the bundle")
        elif url.startswith("http://"):
            if not self.insecure_http:
                raise WardSightError(
                    f"{url} is plain HTTP; allowed only with the explicit development flag (--insecure-http)"
                )
        else:
            raise WardSightError(f"server URL must start with https:// (or http:// for development), got '{url}'")
        if not self.token.startswith("wst."):
            raise WardSightError("token must be one printed by 'wardsight fleet token create' (wst.<id>.<secret>)")
        if self.name is not None and not re.fullmatch(IDENTIFIER_PATTERN, self.name):
            raise WardSightError(f"device name {self.name!r} must be letters, digits, _ . : - (up to 64)")
        if len(self.ssh_authorized_keys) > MAX_SSH_KEYS:
            raise WardSightError(f"ssh_authorized_keys: at most {MAX_SSH_KEYS} keys")
        for line in self.ssh_authorized_keys:
            check_ssh_key(line)
        return self

    @classmethod
    def load(cls, path: Path) -> Bundle:
        try:
            data = json.loads(path.read_text())
            bundle = cls(
                str(data["server_url"]).rstrip("/"),
                str(data["token"]),
                data.get("ca_pem"),
                bool(data.get("insecure_http", False)),
                data.get("tuf_root"),
                data.get("name"),
                _key_lines(data.get("ssh_authorized_keys", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WardSightError(f"cannot read enrollment bundle {path}: {exc}") from None
        return bundle.check()

    def write(self, path: Path) -> None:
        self.check()
        body: dict[str, str | bool | list[str]] = {"server_url": self.server_url.rstrip("/"), "token": self.token}
        if self.ca_pem:
            body["ca_pem"] = self.ca_pem
        if self.insecure_http:
            body["insecure_http"] = True
        if self.tuf_root:
            body["tuf_root"] = self.tuf_root
        if self.name:
            body["name"] = self.name
        if self.ssh_authorized_keys:
            body["ssh_authorized_keys"] = list(self.ssh_authorized_keys)
        write_file_atomically(path, json.dumps(body, indent=2).encode())


def _key_lines(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
        raise TypeError("ssh_authorized_keys must be a list of strings")
    return tuple(line.strip() for line in value)
