"""The SSRF guard: which webhook URLs and addresses the server may send to.

Targets must be ``https://`` (``http://`` and loopback only with ``webhook_allow_insecure``), without
credentials in the URL. The URL is checked when an endpoint is created or changed (:func:`check_url_resolves`,
with a DNS lookup) and before every send (:func:`check_url`), and every address the client actually connects to
is checked again when its socket is made (:func:`guarded_socket_factory`), so a DNS answer that changes later
cannot redirect a delivery.

Addresses are judged by class (:func:`address_refusal`), never by spelling:

- an IPv6 form that carries an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4
  ``2002::/16``, Teredo ``2001::/32``) is judged by the IPv4 address it carries;
- refused: the cloud metadata services (:data:`METADATA_ADDRESSES`, and the names in :data:`METADATA_NAMES`),
  link-local (``169.254/16``, ``fe80::/10``), multicast, reserved (``240/4``, the broadcast address, IPv6's
  reserved blocks, IPv4-compatible ``::a.b.c.d``), IPv6 site-local (``fec0::/10``, deprecated), and every other
  special-purpose block that is not globally routable (``0/8``, documentation and benchmarking ranges, ...);
- loopback and unspecified: only with ``webhook_allow_insecure``;
- allowed: globally routable addresses and the private networks hospital systems live on: RFC 1918
  (``10/8``, ``172.16/12``, ``192.168/16``), shared address space (``100.64/10``) and their IPv6 counterpart,
  unique local addresses (``fc00::/7``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from yarl import URL

MAX_URL_LENGTH = 2048

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata and platform services: AWS (IPv4, ECS, IPv6), GCP (IPv6), Azure's wire server, Alibaba,
# Oracle Cloud Classic. The link-local ones would be refused anyway; the others sit in allowed classes.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
        "fd00:ec2::254",
        "fd20:ce::254",
    )
)
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
# The private networks webhook targets may be on (hospital systems live there).
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UrlRefusedError(ValueError):
    """A webhook URL the server will not send to (scheme, credentials, or a forbidden address)."""


def embedded_ipv4(address: Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with the form's name (none for a plain address)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    if address.ipv4_mapped is not None:
        return [("IPv4-mapped", address.ipv4_mapped)]
    if address in NAT64:
        return [("NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))]
    if address.sixtofour is not None:
        return [("6to4", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo
        return [("Teredo client", client), ("Teredo server", server)]
    return []


def _class_refusal(address: Address, allow_insecure: bool) -> str | None:
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback or address.is_unspecified:
        return None if allow_insecure else "a loopback or unspecified address (only with webhook_allow_insecure)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a site-local address"
    if any(address in network for network in PRIVATE_NETWORKS):
        return None
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a special-purpose address (not globally routable)"
    return None


def address_refusal(address: Address, allow_insecure: bool) -> str | None:
    """Why the server must not connect to ``address``, or None if it may (see the module's policy)."""
    carried = embedded_ipv4(address)
    for form, inner in carried:
        why = _class_refusal(inner, allow_insecure)
        if why is not None:
            return f"{why} ({form} {inner})"
    if carried:
        return None  # the tunnel or translation delivers to the IPv4 address it carries, which is allowed
    return _class_refusal(address, allow_insecure)


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _text_refusal(text: str, allow_insecure: bool) -> str | None:
    """:func:`address_refusal` for an address as the resolver or the connector gives it."""
    address = _parse_address(text)
    return "an unparseable address" if address is None else address_refusal(address, allow_insecure)


def check_url(url: str, *, allow_insecure: bool) -> URL:
    """Refuse URLs the server must not send to, without network access; return the parsed URL.

    Raises:
        UrlRefusedError: with the reason.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefusedError(f"URL longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = URL(url)
        host, port = parsed.host, parsed.port
    except (ValueError, TypeError):
        raise UrlRefusedError("not a valid URL") from None
    if parsed.scheme not in ("https", "http") or not parsed.absolute or not host:
        raise UrlRefusedError("URL must be absolute https://")
    if parsed.scheme == "http" and not allow_insecure:
        raise UrlRefusedError("URL must be https:// (http:// only with webhook_allow_insecure)")
    if parsed.user is not None or parsed.password is not None:
        raise UrlRefusedError("URL must not carry credentials; use the endpoint's HMAC secret or the v1a key")
    if parsed.fragment:
        raise UrlRefusedError("URL must not have a fragment")
    if port is None or not 0 < port < 65536:
        raise UrlRefusedError("URL has no valid port")
    name = host.lower().rstrip(".")
    if name in METADATA_NAMES:
        raise UrlRefusedError(f"host {host} is a cloud metadata service")
    address = _parse_address(name)
    if address is not None:
        why = address_refusal(address, allow_insecure)
        if why is not None:
            raise UrlRefusedError(f"host {host} is {why}")
    return parsed


async def check_url_resolves(url: str, *, allow_insecure: bool) -> None:
    """:func:`check_url`, then look the host up and refuse it if it does not resolve or any address is refused.

    Raises:
        UrlRefusedError: with the reason.
    """
    parsed = check_url(url, allow_insecure=allow_insecure)
    host = parsed.host or ""
    if _parse_address(host) is not None:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parsed.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UrlRefusedError(f"host {host} does not resolve ({exc.strerror or exc})") from None
    for info in infos:
        why = _text_refusal(str(info[4][0]), allow_insecure)
        if why is not None:
            raise UrlRefusedError(f"host {host} resolves to {info[4][0]}, {why}")


def guarded_socket_factory(allow_insecure: bool) -> Callable[[tuple[Any, ...]], socket.socket]:
    """A socket factory for aiohttp's connector that refuses forbidden addresses at connection time."""

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        why = _text_refusal(str(sockaddr[0]), allow_insecure)
        if why is not None:
            raise OSError(errno.EACCES, f"refused to connect to {sockaddr[0]}: {why}")
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
