"""The SSRF guard: which webhook URLs and addresses the server may send to.

Targets must be ``https://`` (``http://`` and loopback only with ``webhook_allow_insecure``), without
credentials in the URL, and never link-local or cloud-metadata addresses. The URL is checked when an
endpoint is created or changed (:func:`check_url_resolves`, with a DNS lookup) and before every send
(:func:`check_url`), and every address the client actually connects to is checked again when its socket is
made (:func:`guarded_socket_factory`), so a DNS answer that changes later cannot redirect a delivery.
Private (RFC 1918) addresses are allowed: hospital systems live there.
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

# Cloud metadata services; the IPv4 ones are link-local or shared space, the AWS IPv6 one is a ULA.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data"})


class UrlRefusedError(ValueError):
    """A webhook URL the server will not send to (scheme, credentials, or a forbidden address)."""


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_insecure: bool) -> str | None:
    """Why the server must not connect to ``address``, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_loopback or address.is_unspecified:
        return None if allow_insecure else "a loopback or unspecified address (only with webhook_allow_insecure)"
    if address.is_multicast or address.is_reserved:
        return "a multicast or reserved address"
    return None


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
