"""The SSRF guard judges addresses by class, unwrapping IPv6 forms that carry IPv4 (issue 14, item 7).

Policy (see :mod:`fleet.webhooks.ssrf`): private LAN targets stay allowed (RFC 1918, 100.64/10, IPv6 ULA), as do
globally routable ones; metadata services, loopback (without ``webhook_allow_insecure``), link-local, multicast,
reserved, site-local and the other special-purpose blocks are refused, whichever spelling names them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket

import pytest

from fleet.webhooks import ssrf
from tests.fleet.helpers import Clock, api_headers, start_app


def teredo(server: str, client: str) -> str:
    """The Teredo address (2001::/32) of ``client`` behind ``server`` (the client's bits are inverted)."""
    value = (
        (0x20010000 << 96)
        | (int(ipaddress.IPv4Address(server)) << 64)
        | (int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF)
    )
    return str(ipaddress.IPv6Address(value))


# The issue's examples first.
REFUSED = [
    ("https://[fd20:ce::254]/", False, "metadata"),  # GCP's IPv6 metadata server (a ULA)
    ("https://[fd20:ce::254]/", True, "metadata"),
    ("https://[2002:7f00:1::]/", False, "loopback"),  # 6to4 of 127.0.0.1
    ("https://168.63.129.16/", False, "metadata"),  # Azure's wire server (a public address)
    ("https://168.63.129.16/", True, "metadata"),
    # Other metadata spellings and classes
    ("https://100.100.100.200/latest/meta-data", True, "metadata"),
    ("https://192.0.0.192/", True, "metadata"),
    ("https://[2002:a9fe:a9fe::]/", True, "metadata address (6to4 169.254.169.254)"),
    ("https://[64:ff9b::a9fe:a9fe]/", True, "metadata address (NAT64 169.254.169.254)"),
    ("https://[64:ff9b::7f00:1]/", False, "loopback"),
    ("https://[::ffff:127.0.0.1]/", False, "loopback"),
    (
        f"https://[{teredo('65.54.227.120', '169.254.169.254')}]/",
        True,
        "metadata address (Teredo client 169.254.169.254)",
    ),
    (f"https://[{teredo('65.54.227.120', '127.0.0.1')}]/", False, "loopback"),
    (f"https://[{teredo('127.0.0.1', '93.184.216.34')}]/", False, "Teredo server"),
    ("https://[2002:a9fe:1::]/", True, "link-local address (6to4 169.254.0.1)"),
    ("https://[fe80::1]/", True, "link-local"),
    ("https://169.254.1.1/", True, "link-local"),
    ("https://[fec0::1]/", True, "site-local"),
    ("https://224.0.0.1/", True, "multicast"),
    ("https://[ff02::1]/", True, "multicast"),
    ("https://240.0.0.1/", True, "reserved"),
    ("https://255.255.255.255/", True, "reserved"),
    ("https://[::7f00:1]/", True, "reserved"),  # IPv4-compatible (deprecated)
    ("https://[64:ff9b:1::a9fe:a9fe]/", True, "reserved"),  # local-use NAT64: where the IPv4 sits is unknown
    ("https://0.1.2.3/", True, "special-purpose"),
    ("https://192.0.2.10/", True, "special-purpose"),  # documentation
    ("https://198.18.0.1/", True, "special-purpose"),  # benchmarking
    ("https://[2001:db8::1]/", True, "special-purpose"),
    ("https://[::]/", False, "unspecified"),
    ("https://instance-data.ec2.internal/", True, "metadata"),
]

ALLOWED = [
    ("https://10.1.2.3/hook", False),  # hospital LANs
    ("https://172.16.5.4:8443/hook", False),
    ("https://192.168.10.20/fhir", False),
    ("https://100.64.0.7/hook", False),  # shared address space (carrier NAT, VPN overlays)
    ("https://[fd12:3456:789a::1]/hook", False),  # IPv6 ULA: the IPv6 counterpart of RFC 1918
    ("https://[fd00:ec2::1]/hook", False),  # a ULA that is not the metadata address
    ("https://93.184.216.34/hook", False),  # public
    ("https://[2606:4700:4700::1111]/hook", False),
    ("https://[::ffff:10.1.2.3]/hook", False),  # mapped, 6to4, NAT64 and Teredo of allowed addresses
    ("https://[2002:5db8:d822::1]/hook", False),
    ("https://[64:ff9b::5db8:d822]/hook", False),  # DNS64 on an IPv6-only ward network
    (f"https://[{teredo('65.54.227.120', '93.184.216.34')}]/hook", False),
    ("https://[2002:7f00:1::]/hook", True),  # loopback forms: development only
    ("https://127.0.0.1:8443/hook", True),
]


@pytest.mark.parametrize(("url", "insecure", "why"), REFUSED)
def test_refused_by_class(url, insecure, why):
    with pytest.raises(ssrf.UrlRefusedError, match=re.escape(why)):
        ssrf.check_url(url, allow_insecure=insecure)


@pytest.mark.parametrize(("url", "insecure"), ALLOWED)
def test_allowed_by_class(url, insecure):
    ssrf.check_url(url, allow_insecure=insecure)


@pytest.mark.parametrize(
    ("family", "address"),
    [
        (socket.AF_INET6, "fd20:ce::254"),
        (socket.AF_INET6, "2002:7f00:1::"),
        (socket.AF_INET6, "64:ff9b::a9fe:a9fe"),
        (socket.AF_INET6, "fec0::1"),
        (socket.AF_INET, "168.63.129.16"),
        (socket.AF_INET, "192.0.2.10"),
    ],
)
def test_the_connection_time_check_uses_the_same_classes(family, address):
    factory = ssrf.guarded_socket_factory(allow_insecure=False)
    sockaddr = (address, 443, 0, 0) if family == socket.AF_INET6 else (address, 443)
    with pytest.raises(OSError, match=f"refused to connect to {address}"):
        factory((family, socket.SOCK_STREAM, 6, "", sockaddr))


@pytest.mark.parametrize("resolved", ["fd20:ce::254", "2002:7f00:1::", "168.63.129.16", "::ffff:169.254.169.254"])
async def test_a_name_is_judged_by_what_it_resolves_to(monkeypatch, resolved):
    loop = asyncio.get_running_loop()

    async def fake_getaddrinfo(host, port, **kwargs):
        family = socket.AF_INET6 if ":" in resolved else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (resolved, port))]

    monkeypatch.setattr(loop, "getaddrinfo", fake_getaddrinfo)
    ssrf.check_url("https://receiver.hospital.example/hook", allow_insecure=False)  # the name alone passes
    with pytest.raises(ssrf.UrlRefusedError, match=f"resolves to {resolved}"):
        await ssrf.check_url_resolves("https://receiver.hospital.example/hook", allow_insecure=False)


async def test_the_api_refuses_the_issues_examples(aiohttp_client, tmp_path):
    client = await start_app(aiohttp_client, tmp_path, Clock())
    admin = api_headers(client, "admin")
    for url in ("https://[fd20:ce::254]/", "https://[2002:7f00:1::]/", "https://168.63.129.16/"):
        resp = await client.post("/api/v1/webhooks", json={"name": "x", "url": url}, headers=admin)
        assert resp.status == 400, (url, await resp.text())
        assert "url refused" in (await resp.json())["error"]
    resp = await client.post("/api/v1/webhooks", json={"name": "lan", "url": "https://192.168.1.10/h"}, headers=admin)
    assert resp.status == 201, await resp.text()
