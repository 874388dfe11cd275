"""The firewall allowance first boot writes: the fleet server's URL -> nftables text (pure), and that text loaded
for real by nft in a private network namespace, where it lets TCP through to the server's port and nothing else."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from firmware.firewall import fleet_rules, resolve, server_endpoint, write_fleet_rules
from firmware.transport import UnreachableError
from wardsight.errors import WardSightError


def rule_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "accept" in line]


@pytest.mark.parametrize(
    "url, endpoint",
    [
        ("https://fleet.example.org", ("fleet.example.org", 443)),
        ("http://fleet.example.org", ("fleet.example.org", 80)),
        ("https://Fleet.Example.org:8765/", ("fleet.example.org", 8765)),
        ("https://[2001:db8::7]:8443", ("2001:db8::7", 8443)),
        ("http://10.1.2.3:8765", ("10.1.2.3", 8765)),
    ],
)
def test_endpoint_of_a_url(url, endpoint):
    assert server_endpoint(url) == endpoint


@pytest.mark.parametrize(
    "url",
    ["ftp://fleet.example.org", "https://", "https://fleet.example.org:99999", "https://bad_host!.org", "fleet.org"],
)
def test_urls_that_name_no_server_are_refused(url):
    with pytest.raises(WardSightError, match="firewall"):
        server_endpoint(url)


def test_https_with_a_hostname_allows_each_resolved_address_at_443():
    text = fleet_rules("https://fleet.example.org", ["192.0.2.20", "192.0.2.10", "2001:db8::1", "192.0.2.10"])
    assert rule_lines(text) == [
        "ip daddr { 192.0.2.10, 192.0.2.20 } tcp dport 443 accept",
        "ip6 daddr { 2001:db8::1 } tcp dport 443 accept",
    ]
    assert "fleet.example.org:443" in text
    assert "flush chain inet wardsight fleet_out" in text


def test_http_with_a_port_and_only_ipv4():
    assert rule_lines(fleet_rules("http://10.1.2.3:8765", ["10.1.2.3"])) == [
        "ip daddr { 10.1.2.3 } tcp dport 8765 accept"
    ]


def test_ipv6_literal_only_ipv6_and_the_zone_is_dropped():
    text = fleet_rules("https://[fe80::1%25eth0]:8443", ["fe80::1%eth0"])
    assert rule_lines(text) == ["ip6 daddr { fe80::1 } tcp dport 8443 accept"]


def test_no_address_or_a_bad_one_is_refused():
    with pytest.raises(WardSightError, match="no address"):
        fleet_rules("https://fleet.example.org", [])
    with pytest.raises(WardSightError, match="not an IP address"):
        fleet_rules("https://fleet.example.org", ["192.0.2.1; drop"])


def test_resolve_literals_and_names():
    assert resolve("10.1.2.3", 443) == ["10.1.2.3"]
    assert resolve("2001:db8::7", 443) == ["2001:db8::7"]
    assert "127.0.0.1" in resolve("localhost", 443)
    with pytest.raises(UnreachableError, match="cannot resolve"):
        resolve("no-such-host.invalid", 443)


def test_the_file_is_rewritten_only_when_it_changes(tmp_path):
    path = tmp_path / "firewall" / "fleet.nft"
    addresses = ["192.0.2.1"]
    assert write_fleet_rules(path, "https://fleet.example.org", lambda host, port: addresses) is True
    assert path.stat().st_mode & 0o777 == 0o644
    assert write_fleet_rules(path, "https://fleet.example.org", lambda host, port: addresses) is False
    addresses = ["192.0.2.2"]
    assert write_fleet_rules(path, "https://fleet.example.org", lambda host, port: addresses) is True
    assert "192.0.2.2" in path.read_text() and "192.0.2.1" not in path.read_text()


# ---- loaded by nft in a private network namespace -------------------------------------------------------------

BASE_RULES = """\
flush ruleset
table inet wardsight {
	chain fleet_out {
	}
	chain output {
		type filter hook output priority filter; policy drop;
		ct state established,related accept
		jump fleet_out
		meta l4proto tcp reject with tcp reset
	}
}
"""

PROBE = textwrap.dedent(
    """
    import socket, subprocess, sys
    base, fleet, port, other = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    listeners = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for p in (port, other):
            s = socket.socket(family)
            s.bind((host, p))
            s.listen()
            listeners.append(s)
    for path in (base, fleet, fleet):  # loaded twice: replaced, not doubled
        subprocess.run(["nft", "-f", path], check=True)
    print(subprocess.run(["nft", "list", "chain", "inet", "wardsight", "fleet_out"], capture_output=True,
                         text=True, check=True).stdout.count("accept"))
    for host in ("127.0.0.1", "::1"):
        for p in (port, other):
            try:
                socket.create_connection((host, p), timeout=5).close()
                print(host, p, "open")
            except OSError:
                print(host, p, "blocked")
    """
)


def namespace_missing() -> str | None:
    for tool in ("nft", "unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: nftables, util-linux, iproute2)"
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False).returncode != 0:
        return "cannot make a user and network namespace here (unshare -rn)"
    return None


def test_the_rules_let_through_only_the_fleet_port_in_a_network_namespace(tmp_path: Path):
    missing = namespace_missing()
    if missing:
        pytest.skip(missing)
    with socket.socket() as a, socket.socket() as b:  # two port numbers (used inside the namespace, not here)
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        port, other = a.getsockname()[1], b.getsockname()[1]
    base, fleet, probe = tmp_path / "base.nft", tmp_path / "fleet.nft", tmp_path / "probe.py"
    base.write_text(BASE_RULES)
    write_fleet_rules(fleet, f"http://localhost:{port}", lambda host, p: ["127.0.0.1", "::1"])
    probe.write_text(PROBE)
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, str(probe), str(base), str(fleet), str(port), str(other)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "2"  # one IPv4 and one IPv6 rule, after two loads
    assert lines[1:] == [
        f"127.0.0.1 {port} open",
        f"127.0.0.1 {other} blocked",
        f"::1 {port} open",
        f"::1 {other} blocked",
    ]
