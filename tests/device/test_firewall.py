"""The firewall allowance first boot writes: the fleet server's URL -> elements of the image's fleet sets (pure);
that file accepted whole by the image's root loader, and loaded by nft after the image's base rules in a private
network namespace, where it lets TCP through to the server's address and port and nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from firmware.firewall import fleet_rules, resolve, server_endpoint, write_fleet_rules
from firmware.transport import UnreachableError
from wardsight.errors import WardSightError

ROOT = Path(__file__).resolve().parent.parent.parent
BASE_RULES = ROOT / "images/nftables/base.nft"
LOADER = ROOT / "images/deb/lib/wardsight-firewall"


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


def test_https_with_a_hostname_allows_each_resolved_address_at_443_and_nothing_else():
    text = fleet_rules("https://fleet.example.org", ["192.0.2.20", "192.0.2.10", "2001:db8::1", "192.0.2.10"])
    assert text == (
        "add element inet wardsight fleet4 { 192.0.2.10 . 443 }\n"
        "add element inet wardsight fleet4 { 192.0.2.20 . 443 }\n"
        "add element inet wardsight fleet6 { 2001:db8::1 . 443 }\n"
    )


def test_http_with_a_port_and_only_ipv4():
    text = fleet_rules("http://10.1.2.3:8765", ["10.1.2.3"])
    assert text == "add element inet wardsight fleet4 { 10.1.2.3 . 8765 }\n"


def test_ipv6_literal_only_ipv6_and_the_zone_is_dropped():
    text = fleet_rules("https://[fe80::1%25eth0]:8443", ["fe80::1%eth0"])
    assert text == "add element inet wardsight fleet6 { fe80::1 . 8443 }\n"


def test_an_ipv4_mapped_address_goes_to_the_ipv4_set():
    assert resolve("::ffff:192.0.2.7", 443) == ["192.0.2.7"]
    text = fleet_rules("http://[::ffff:192.0.2.7]:80", ["::ffff:192.0.2.7"])
    assert text == "add element inet wardsight fleet4 { 192.0.2.7 . 80 }\n"


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
    assert path.read_text() == "add element inet wardsight fleet4 { 192.0.2.2 . 443 }\n"


# ---- accepted by the image's root loader ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, addresses",
    [
        ("https://fleet.example.org", ["192.0.2.10", "198.51.100.7", "2001:db8::10", "2001:db8:0:1::7"]),
        ("http://10.1.2.3:8765", ["10.1.2.3"]),
        ("https://[2001:db8::7]:65535", ["2001:db8::7"]),
        ("https://[fe80::1%25eth0]", ["fe80::1%eth0"]),
        ("http://[::ffff:192.0.2.7]:1", ["::ffff:192.0.2.7"]),
    ],
)
def test_the_image_loader_takes_the_file_whole(tmp_path: Path, url: str, addresses: list[str]):
    """The loader ignores the whole file (and the device cannot reach its server) if one line is off."""
    if shutil.which("sh") is None or shutil.which("grep") is None:
        pytest.skip("the image's loader needs sh and grep")
    fleet = tmp_path / "fleet.nft"
    write_fleet_rules(fleet, url, lambda host, port: addresses)
    env = dict(os.environ, WARDSIGHT_FIREWALL_BASE=str(BASE_RULES), WARDSIGHT_FIREWALL_FLEET=str(fleet))
    env["WARDSIGHT_FIREWALL_BOOTSTRAP"] = env["WARDSIGHT_SSH_KEYS"] = str(tmp_path / "absent")
    done = subprocess.run([str(LOADER), "print"], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout == BASE_RULES.read_text() + f"# from {fleet}\n" + fleet.read_text()


# ---- loaded by nft after the image's base rules, in a private network namespace -------------------------------

# After the base rules' output chain (priority filter = 0), records the SYNs that chain let through: a SYN
# passes the output hooks inside connect(), so once a non-blocking connect() returns, this set has its answer.
WITNESS = """\
table inet witness {
	set seen4 { type ipv4_addr . inet_service; flags dynamic; }
	set seen6 { type ipv6_addr . inet_service; flags dynamic; }
	chain output {
		type filter hook output priority 100; policy accept;
		tcp flags & (syn | ack) == syn update @seen4 { ip daddr . tcp dport }
		tcp flags & (syn | ack) == syn update @seen6 { ip6 daddr . tcp dport }
	}
}
"""

# Runs as root of a fresh user + network namespace (the "device"); the server side is a second network namespace
# behind a veth pair (to loopback the base rules accept everything), holding 192.0.2.10/.11, 2001:db8::10/::11
# and listening on both ports there.
PROBE = textwrap.dedent(
    """
    import ctypes, os, socket, subprocess, sys
    CLONE_NEWNET = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    base, fleet, witness, port, other = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

    def check(result, what):
        if result != 0:
            raise OSError(ctypes.get_errno(), what)

    def sh(*command):
        subprocess.run(command, check=True)

    device = os.open("/proc/self/ns/net", os.O_RDONLY)
    sh("ip", "link", "set", "lo", "up")
    check(libc.unshare(CLONE_NEWNET), "unshare")
    server = os.open("/proc/self/ns/net", os.O_RDONLY)
    holder = subprocess.Popen(["sleep", "60"])  # names the server's namespace for "ip link ... netns PID"
    check(libc.setns(device, CLONE_NEWNET), "setns")
    sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", str(holder.pid))
    holder.kill()
    sh("ip", "addr", "add", "192.0.2.1/24", "dev", "v0")
    sh("ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "v0", "nodad")
    sh("ip", "link", "set", "v0", "up")
    check(libc.setns(server, CLONE_NEWNET), "setns")
    for address in ("192.0.2.10/24", "192.0.2.11/24", "2001:db8::10/64", "2001:db8::11/64"):
        sh("ip", "addr", "add", address, "dev", "v1", *(["nodad"] if ":" in address else []))
    sh("ip", "link", "set", "v1", "up")
    listeners = []
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for p in (port, other):
            s = socket.socket(family)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((host, p))
            s.listen()
            listeners.append(s)
    check(libc.setns(device, CLONE_NEWNET), "setns")
    for path in (base, fleet, base, fleet, witness):  # loaded twice: base.nft starts the table afresh
        sh("nft", "-f", path)
    for name in ("fleet4", "fleet6"):
        listed = subprocess.run(["nft", "list", "set", "inet", "wardsight", name], capture_output=True, text=True)
        print(name, *[line.strip() for line in listed.stdout.splitlines() if "elements" in line])
    targets = [(h, p) for h in ("192.0.2.10", "192.0.2.11", "2001:db8::10", "2001:db8::11") for p in (port, other)]
    for host, p in targets:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.setblocking(False)
        s.connect_ex((host, p))
        listeners.append(s)
    seen = subprocess.run(["nft", "list", "table", "inet", "witness"], capture_output=True, text=True, check=True)
    for host, p in targets:
        if f"{host} . {p}" not in seen.stdout:
            print(host, p, "blocked")
            continue
        with socket.create_connection((host, p), timeout=30):  # and the answer comes back in
            print(host, p, "open")
    """
)


def namespace_missing() -> str | None:
    for tool in ("nft", "unshare", "ip", "sleep"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"{tool} is not installed (Debian: nftables, util-linux, iproute2)"
    if subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False).returncode != 0:
        return "cannot make a user and network namespace here (unshare -rn)"
    return None


def test_after_the_base_rules_only_the_fleet_address_and_port_get_out(tmp_path: Path):
    missing = namespace_missing()
    if missing:
        pytest.skip(missing)
    port, other = 8443, 9443
    fleet, witness, probe = tmp_path / "fleet.nft", tmp_path / "witness.nft", tmp_path / "probe.py"
    write_fleet_rules(fleet, f"https://fleet.example.org:{port}", lambda host, p: ["192.0.2.10", "2001:db8::10"])
    witness.write_text(WITNESS)
    probe.write_text(PROBE)
    env = dict(os.environ, PATH=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    arguments = [str(path) for path in (probe, BASE_RULES, fleet, witness)] + [str(port), str(other)]
    done = subprocess.run(
        ["unshare", "-rn", sys.executable, *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"fleet4 elements = {{ 192.0.2.10 . {port} }}",  # once, after two loads
        f"fleet6 elements = {{ 2001:db8::10 . {port} }}",
        f"192.0.2.10 {port} open",
        f"192.0.2.10 {other} blocked",
        f"192.0.2.11 {port} blocked",
        f"192.0.2.11 {other} blocked",
        f"2001:db8::10 {port} open",
        f"2001:db8::10 {other} blocked",
        f"2001:db8::11 {port} blocked",
        f"2001:db8::11 {other} blocked",
    ]
