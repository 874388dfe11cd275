"""The firewall's one allowance for the agent: outbound TCP to the fleet server, as nftables set elements.

The image's base rules (``images/nftables/base.nft``) declare table ``inet wardsight`` with the sets ``fleet4``
(``ipv4_addr . inet_service``) and ``fleet6`` (``ipv6_addr . inet_service``) and accept output to their members
only. ``wardsight device firstboot`` writes the members for the enrollment bundle's server URL
(:func:`fleet_rules`, pure) from the addresses its host has now (:func:`resolve`), one line each::

    add element inet wardsight fleet4 { 192.0.2.10 . 443 }
    add element inet wardsight fleet6 { 2001:db8::10 . 443 }

and nothing else: the image's root loader (``/usr/lib/wardsight/wardsight-firewall``) takes the file only when
every line has exactly this form (a file the unprivileged agent writes must not change any other rule), and
only IP literals, since it is loaded before the network (and DNS) is up.
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
SETS = {4: "fleet4", 6: "fleet6"}
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
    """``host`` as an address (an IPv4-mapped IPv6 one as IPv4; a link-local zone dropped), else None."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a zone (%eth0) is not nft syntax
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def fleet_rules(url: str, addresses: Iterable[str]) -> str:
    """One ``add element`` line per address of the server (sorted, IPv4 first) at the URL's TCP port."""
    host, port = server_endpoint(url)
    given = list(addresses)
    parsed = {_literal(a) for a in given}
    if None in parsed:
        raise WardSightError(f"not an IP address among {sorted(given)}")
    v4 = sorted(a for a in parsed if isinstance(a, ipaddress.IPv4Address))
    v6 = sorted(a for a in parsed if isinstance(a, ipaddress.IPv6Address))
    if not v4 and not v6:
        raise WardSightError(f"{host} resolved to no address: nothing to allow")
    return "".join(f"add element {TABLE} {SETS[a.version]} {{ {a} . {port} }}\n" for a in (*v4, *v6))


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
    """Write the elements for ``url`` to ``path`` (0644) unless it already holds them; True when it changed."""
    text = fleet_rules(url, resolver(*server_endpoint(url)))
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    write_file_atomically(path, text.encode(), mode=0o644)
    return True
