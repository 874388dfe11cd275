"""The enrollment bundle: what a new device needs to find, trust and join its fleet.

Written (mode 0600) by ``wardsight fleet token create --bundle`` or ``wardsight provision bundle`` onto the
SD card; read by ``wardsight device enroll --bundle``. It holds the server URL, a one-time token and the
fleet CA certificate that the device pins. Plain-HTTP servers are refused unless the bundle says, explicitly,
that this is a development setup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

PEM_CERT = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class Bundle:
    server_url: str
    token: str
    ca_pem: str | None = None  # required for https
    insecure_http: bool = False  # required for http
    tuf_root: str | None = None  # the OTA repository's trusted root.json (TUF), when the fleet has one

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
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WardSightError(f"cannot read enrollment bundle {path}: {exc}") from None
        return bundle.check()

    def write(self, path: Path) -> None:
        self.check()
        body: dict[str, str | bool] = {"server_url": self.server_url.rstrip("/"), "token": self.token}
        if self.ca_pem:
            body["ca_pem"] = self.ca_pem
        if self.insecure_http:
            body["insecure_http"] = True
        if self.tuf_root:
            body["tuf_root"] = self.tuf_root
        write_file_atomically(path, json.dumps(body, indent=2).encode())
