"""The firewall's one allowance for the agent: outbound TCP to the fleet server, as nftables text.

The image's static rules (``/etc/nftables.conf``) allow DNS and NTP, drop other outbound traffic and jump from
their output chain to ``inet wardsight fleet_out``; ``wardsight device firstboot`` fills that chain from the
enrollment bundle's URL (:func:`fleet_rules`, pure) with the addresses the server's name resolves to now
(:func:`resolve`), and the image's root unit loads the file. The file can be loaded again (it flushes the chain
first) and on its own (it declares the table and chain it fills).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from firmware.transport import UnreachableError
from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

TABLE = "inet wardsight"
CHAIN = "fleet_out"
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?")
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def server_endpoint(url: str) -> tuple[str, int]:
    """The host (a name or an address, IPv6 without brackets) and TCP port of a fleet server URL."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise WardSightError(f"cannot allow {url!r} through the firewall: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise WardSightError(f"cannot allow {url!r} through the firewall: not an http(s) URL with a host")
    if _literal(host) is None and not _HOSTNAME.fullmatch(host):
        raise WardSightError(f"cannot allow {url!r} through the firewall: {host!r} is not a host name")
    return host, port if port is not None else (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # a link-local zone (%eth0) is not nft syntax
    except ValueError:
        return None


def fleet_rules(url: str, addresses: Iterable[str]) -> str:
    """nftables text filling ``fleet_out`` with: TCP to ``addresses`` at the URL's port, accepted."""
    host, port = server_endpoint(url)
    given = list(addresses)
    parsed = {_literal(a) for a in given}
    if None in parsed:
        raise WardSightError(f"not an IP address among {sorted(given)}")
    v4 = sorted(a for a in parsed if isinstance(a, ipaddress.IPv4Address))
    v6 = sorted(a for a in parsed if isinstance(a, ipaddress.IPv6Address))
    if not v4 and not v6:
        raise WardSightError(f"{host} resolved to no address: nothing to allow")
    rules = [f"ip daddr {{ {', '.join(map(str, v4))} }} tcp dport {port} accept"] if v4 else []
    rules += [f"ip6 daddr {{ {', '.join(map(str, v6))} }} tcp dport {port} accept"] if v6 else []
    shown = f"[{host}]" if ":" in host else host
    return "\n".join(
        [
            f"# Outbound to the fleet server {shown}:{port}, written by 'wardsight device firstboot' at each boot.",
            f"# Filled into {TABLE} {CHAIN}, which the image's static rules jump to; loading it again replaces it.",
            f"table {TABLE} {{",
            f"\tchain {CHAIN} {{",
            "\t}",
            "}",
            f"flush chain {TABLE} {CHAIN}",
            f"table {TABLE} {{",
            f"\tchain {CHAIN} {{",
            *(f"\t\t{rule}" for rule in rules),
            "\t}",
            "}",
            "",
        ]
    )


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` has now (itself when it is one); :class:`UnreachableError` when it has none yet."""
    literal = _literal(host)
    if literal is not None:
        return [str(literal)]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnreachableError(f"cannot resolve {host}: {exc}") from None
    return sorted({str(info[4][0]).split("%", 1)[0] for info in infos})


def write_fleet_rules(path: Path, url: str, resolver: Resolver = resolve) -> bool:
    """Write the rules for ``url`` to ``path`` (0644) unless it already holds them; True when it changed."""
    text = fleet_rules(url, resolver(*server_endpoint(url)))
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_file_atomically(path, text.encode(), mode=0o644)
    return True
