"""The server URL that ``wardsight fleet token create --bundle`` writes into an enrollment bundle.

``public_url`` when the configuration sets one (a reverse proxy, a DNS name: what devices reach). Otherwise the
URL of the server that runs on this configuration's database now (it says where it listens in its data directory:
:func:`fleet.server.running_server`), else of the server this configuration would start: its scheme, its port, and
a host that both reaches it and is named by its TLS certificate (``tls_hostnames``):

- bound to one address (``host = "10.0.0.5"``, the default ``127.0.0.1``): that address when the certificate
  names it, else a name the certificate has (a DNS name for that address), else the address (with a warning);
- bound to every address (``0.0.0.0``, ``::``): the first name in the certificate that is not loopback, else
  this machine's loopback address.

The running server's address, port and scheme are the ones it really listens at (``wardsight fleet serve --port N``,
``--host``, the demo's ``--port 0``); with no server running, the configured ones are used, and ``port = 0`` (a free
port picked at start, not known before) is refused: pass ``--server`` with the URL it printed.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from fleet.config import ServerConfig
from wardsight.errors import WardSightError

if TYPE_CHECKING:
    from fleet.server import Listening


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _plain(host: str) -> str:
    """``host`` as the certificate would name it: an address in its compressed form, a DNS name in lower case."""
    address = _address(host)
    return str(address) if address is not None else host.strip().lower().rstrip(".")


def is_loopback(host: str) -> bool:
    address = _address(host)
    if address is not None:
        return address.is_loopback
    name = _plain(host)
    return name == "localhost" or name.endswith(".localhost")


def _url_host(host: str) -> str:
    address = _address(host)
    if address is None:
        return host.strip()
    return f"[{address}]" if address.version == 6 else str(address)


def _choose_host(config: ServerConfig) -> str:
    names = [_plain(n) for n in config.tls_hostnames if n.strip()]
    bound = _address(config.host)
    if bound is not None and bound.is_unspecified:
        reachable = [n for n in names if not is_loopback(n)]
        loopback = "::1" if bound.version == 6 else "127.0.0.1"
        return reachable[0] if reachable else loopback
    host = _plain(config.host)
    if config.insecure_http or host in names or not names:
        return host
    # The certificate does not name the address it is served on: a name it has that leads to the same place.
    same_kind = [n for n in names if is_loopback(n) == is_loopback(host)]
    return same_kind[0] if same_kind else host


def bundle_server_url(config: ServerConfig, running: Listening | None = None) -> str:
    """The URL a bundle made from ``config`` names, ``running`` being the server that listens for it now, if one
    does (see the module docstring)."""
    if config.public_url:
        return config.public_url.rstrip("/")
    if running is not None:
        config = config.model_copy(
            update={"host": running.host, "port": running.port, "insecure_http": running.insecure_http}
        )
    if config.port == 0:
        raise WardSightError(
            "the server's port is 0 (a free one picked when it starts): pass --server with the URL"
            " 'wardsight fleet serve' printed, or set public_url in server.toml"
        )
    scheme = "http" if config.insecure_http else "https"
    return f"{scheme}://{_url_host(_choose_host(config))}:{config.port}"


def bundle_url_warnings(config: ServerConfig, url: str) -> list[str]:
    """What the operator should know about ``url`` in a bundle from ``config``: one line each."""
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    notes = []
    if is_loopback(host):
        notes.append(
            f"note: the bundle names {url}, which only a device on this machine reaches; for devices elsewhere set"
            " public_url (or host and tls_hostnames) in server.toml, or pass --server"
        )
    names = {_plain(n) for n in config.tls_hostnames}
    if url.startswith("https://") and not config.public_url and _plain(host) not in names:
        notes.append(
            f"warning: the server certificate names {', '.join(sorted(names))}, not {host}: the device will refuse"
            " it; add it to tls_hostnames in server.toml"
        )
    return notes
