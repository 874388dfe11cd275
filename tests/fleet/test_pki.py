"""The fleet CA, the server certificate, the device's pinned TLS context and the fleet server over HTTPS.

Everything is real: certificates made with ``cryptography``, TLS servers on loopback, urllib and aiohttp clients.
"""

from __future__ import annotations

import http.client
import json
import ssl
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fleet import pki
from fleet.config import ServerConfig
from fleet.server import BackgroundServer, serve_forever
from wardsight.tls import PinningError, pinned_context

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

NOT_YET_VALID, EXPIRED, SELF_SIGNED_IN_CHAIN, LOCAL_ISSUER, HOSTNAME_MISMATCH, IP_MISMATCH = 9, 10, 19, 20, 62, 64


def real_now() -> datetime:
    return datetime.now(UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def sans(cert: x509.Certificate) -> tuple[set[str], set[object]]:
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(names.get_values_for_type(x509.DNSName)), set(names.get_values_for_type(x509.IPAddress))


# --- the CA ----------------------------------------------------------------------------------------------


def test_ca_is_created_private_and_reused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ca = pki.ensure_ca(keys, now=NOW)
    assert mode(ca.key_path) == 0o600
    assert ca.cert_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert pki.ca_pem(ca) == ca.cert_path.read_text()

    cert = ca.cert
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "CN=WardSight fleet CA"
    cert.verify_directly_issued_by(cert)
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key)
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=3650)

    fp = pki.fingerprint(cert)
    assert len(fp) == 64 and int(fp, 16) >= 0
    key_bytes = ca.key_path.read_bytes()
    again = pki.ensure_ca(keys, now=NOW + timedelta(days=400))
    assert pki.fingerprint(again.cert) == fp and again.key_path.read_bytes() == key_bytes


def _other_ca_files(tmp_path: Path) -> pki.FleetCA:
    return pki.ensure_ca(tmp_path / "other", now=NOW)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda keys, other: (keys / "ca.key").write_text("garbage"), "not an unencrypted PEM private key"),
        (lambda keys, other: (keys / "ca.crt").write_text("garbage"), "not a PEM certificate"),
        (lambda keys, other: (keys / "ca.crt").write_bytes(other.cert_path.read_bytes()), "does not belong to"),
        (lambda keys, other: (keys / "ca.key").unlink(), "its key .* is missing"),
        (lambda keys, other: (keys / "ca.key").chmod(0o644), "readable by others"),
    ],
    ids=["corrupt-key", "corrupt-cert", "mismatched-pair", "cert-without-key", "key-mode-0644"],
)
def test_a_damaged_ca_is_an_error_and_never_replaced(
    tmp_path: Path, damage: Callable[[Path, pki.FleetCA], object], message: str
) -> None:
    keys = tmp_path / "keys"
    pki.ensure_ca(keys, now=NOW)
    damage(keys, _other_ca_files(tmp_path))
    before = {p.name: p.read_bytes() for p in keys.iterdir() if p.is_file()}
    with pytest.raises(pki.PKIError, match=message):
        pki.ensure_ca(keys, now=NOW)
    assert {p.name: p.read_bytes() for p in keys.iterdir() if p.is_file()} == before


def test_an_expired_or_non_ca_certificate_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    pki.ensure_ca(keys, now=NOW)
    with pytest.raises(pki.PKIError, match="expired on 2036-04-28; it must be rotated"):
        pki.ensure_ca(keys, now=NOW + timedelta(days=3651))

    other = tmp_path / "leaf-as-ca"
    ca = pki.ensure_ca(tmp_path / "ca", now=NOW)
    cert_path, key_path = pki.ensure_server_cert(ca, other, ["localhost"], now=NOW)
    cert_path.rename(other / "ca.crt")
    key_path.rename(other / "ca.key")
    with pytest.raises(pki.PKIError, match="is not a CA certificate"):
        pki.ensure_ca(other, now=NOW)


def test_a_lost_ca_certificate_is_reissued_for_the_same_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = pki.ensure_ca(keys, now=NOW)
    first.cert_path.unlink()
    second = pki.ensure_ca(keys, now=NOW)
    assert second.cert.public_key() == first.cert.public_key()
    # server certificates from either certificate verify under the other: same name, key and key identifier
    cert_path, _ = pki.ensure_server_cert(second, tmp_path / "srv", ["localhost"], now=NOW)
    load_cert(cert_path).verify_directly_issued_by(first.cert)


def test_time_must_be_timezone_aware(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.ensure_ca(tmp_path, now=datetime(2026, 1, 1))  # naive: the point of the test


# --- the server certificate ----------------------------------------------------------------------------


def test_server_certificate_names_usage_and_lifetime(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path, now=NOW)
    hostnames = ["fleet.example.org", "LOCALHOST", "127.0.0.1", "[::1]", "localhost"]
    cert_path, key_path = pki.ensure_server_cert(ca, tmp_path, hostnames, now=NOW)
    assert mode(key_path) == 0o600
    cert = load_cert(cert_path)
    cert.verify_directly_issued_by(ca.cert)
    assert sans(cert) == ({"fleet.example.org", "localhost"}, {ip_address("127.0.0.1"), ip_address("::1")})
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_before_utc == NOW - timedelta(minutes=5)
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    key = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"


def test_server_certificate_is_reused_until_due_then_renewed(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path, now=NOW)
    cert_path, key_path = pki.ensure_server_cert(ca, tmp_path, ["localhost"], now=NOW)
    original = cert_path.read_bytes(), key_path.read_bytes()

    def issue(
        hostnames: tuple[str, ...] = ("localhost",), now: datetime = NOW, issuer: pki.FleetCA = ca
    ) -> tuple[bytes, bytes]:
        pki.ensure_server_cert(issuer, tmp_path, list(hostnames), now=now)
        return cert_path.read_bytes(), key_path.read_bytes()

    assert issue() == original
    assert issue(now=NOW + timedelta(days=59)) == original  # 31 days left
    renewed = issue(now=NOW + timedelta(days=61))  # 29 days left: within renew_before_days
    assert renewed[0] != original[0] and renewed[1] != original[1]  # a new key too
    assert load_cert(cert_path).not_valid_after_utc == NOW + timedelta(days=61 + 90)
    assert issue(now=NOW + timedelta(days=61)) == renewed

    moved = issue(hostnames=("localhost", "fleet.example.org"), now=NOW + timedelta(days=61))
    assert moved != renewed and sans(load_cert(cert_path))[0] == {"localhost", "fleet.example.org"}

    other = pki.ensure_ca(tmp_path / "other", now=NOW)
    reissued = issue(hostnames=("localhost", "fleet.example.org"), now=NOW + timedelta(days=61), issuer=other)
    assert reissued != moved
    load_cert(cert_path).verify_directly_issued_by(other.cert)

    cert_path.write_text("garbage")
    issue(issuer=other, now=NOW + timedelta(days=61), hostnames=("localhost", "fleet.example.org"))
    load_cert(cert_path).verify_directly_issued_by(other.cert)

    # a certificate not valid yet at ``now`` (the clock went back) is reissued as well
    issue(issuer=other, now=NOW, hostnames=("localhost", "fleet.example.org"))
    assert load_cert(cert_path).not_valid_before_utc == NOW - timedelta(minutes=5)


@pytest.mark.parametrize("hostnames", [[], ["bad host"], ["user@host"], ["bücher.example"], [""]])
def test_unusable_hostnames_are_refused(tmp_path: Path, hostnames: list[str]) -> None:
    ca = pki.ensure_ca(tmp_path, now=NOW)
    with pytest.raises(pki.PKIError):
        pki.ensure_server_cert(ca, tmp_path, hostnames, now=NOW)
    assert not (tmp_path / "server.crt").exists()


def test_renewal_window_must_be_shorter_than_the_lifetime(tmp_path: Path) -> None:
    ca = pki.ensure_ca(tmp_path, now=NOW)
    with pytest.raises(ValueError, match="renew_before_days"):
        pki.ensure_server_cert(ca, tmp_path, ["localhost"], now=NOW, lifetime_days=30, renew_before_days=30)


# --- the device's pinned context against a plain TLS server ---------------------------------------------


@contextmanager
def https_server(cert_path: Path, key_path: Path) -> Iterator[int]:
    """A stdlib HTTPS server on loopback answering every GET with ``ok``; yields its port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = pki.server_ssl_context(cert_path, key_path).wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def fetch(url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, context=context, timeout=5) as resp:
        return resp.status, resp.read()


def refused(url: str, context: ssl.SSLContext | None) -> ssl.SSLCertVerificationError:
    with pytest.raises(urllib.error.URLError) as info:
        fetch(url, context)
    reason = info.value.reason
    assert isinstance(reason, ssl.SSLCertVerificationError), reason
    return reason


def test_pinned_context_trusts_only_the_pinned_ca() -> None:
    pem = pki.ca_pem(pki_ca_in_memory())
    context = pinned_context(pem)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "WardSight fleet CA"),),)]
    assert context.verify_flags & ssl.VERIFY_X509_STRICT
    assert not context.verify_flags & 0x200000
    assert pinned_context(pem, ignore_clock=True).verify_flags & 0x200000  # X509_V_FLAG_NO_CHECK_TIME
    for bad in ("", "not a certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(PinningError):
            pinned_context(bad)


def pki_ca_in_memory() -> pki.FleetCA:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return pki.ensure_ca(Path(tmp), now=real_now())


@pytest.mark.parametrize(
    ("ca_time", "leaf_time", "code"),
    [
        (None, datetime(2036, 6, 1, tzinfo=UTC), NOT_YET_VALID),  # the device clock is years behind
        (None, datetime(2015, 6, 1, tzinfo=UTC), EXPIRED),  # the device clock is years ahead
        (datetime(2036, 6, 1, tzinfo=UTC), datetime(2036, 6, 1, tzinfo=UTC), NOT_YET_VALID),  # CA too
    ],
    ids=["leaf-in-future", "leaf-in-past", "ca-and-leaf-in-future"],
)
def test_ignore_clock_skips_only_the_validity_times(
    tmp_path: Path, ca_time: datetime | None, leaf_time: datetime, code: int
) -> None:
    ca = pki.ensure_ca(tmp_path / "ca", now=ca_time or real_now())
    cert_path, key_path = pki.ensure_server_cert(ca, tmp_path / "srv", ["localhost", "127.0.0.1"], now=leaf_time)
    stranger = pki.ensure_ca(tmp_path / "stranger", now=ca_time or real_now())  # same CA name, another key
    with https_server(cert_path, key_path) as port:
        url = f"https://localhost:{port}/"
        assert refused(url, pinned_context(pki.ca_pem(ca))).verify_code == code
        assert fetch(url, pinned_context(pki.ca_pem(ca), ignore_clock=True)) == (200, b"ok")
        assert fetch(f"https://127.0.0.1:{port}/", pinned_context(pki.ca_pem(ca), ignore_clock=True))[0] == 200
        for ignore_clock in (False, True):
            context = pinned_context(pki.ca_pem(stranger), ignore_clock=ignore_clock)
            assert refused(url, context).verify_code in (LOCAL_ISSUER, code)


@pytest.mark.parametrize("ignore_clock", [False, True])
def test_another_ca_and_a_wrong_hostname_are_refused_in_both_modes(tmp_path: Path, ignore_clock: bool) -> None:
    ca = pki.ensure_ca(tmp_path / "ca", now=real_now())
    stranger = pki.ensure_ca(tmp_path / "stranger", now=real_now())
    cert_path, key_path = pki.ensure_server_cert(ca, tmp_path / "srv", ["localhost"], now=real_now())
    with https_server(cert_path, key_path) as port:
        good = pinned_context(pki.ca_pem(ca), ignore_clock=ignore_clock)
        assert fetch(f"https://localhost:{port}/", good) == (200, b"ok")
        assert refused(f"https://127.0.0.1:{port}/", good).verify_code == IP_MISMATCH
        wrong = pinned_context(pki.ca_pem(stranger), ignore_clock=ignore_clock)
        assert refused(f"https://localhost:{port}/", wrong).verify_code == LOCAL_ISSUER
        # the CA itself is a pinned anchor, not a licence for any name it could sign
        assert refused(f"https://localhost:{port}/", None).verify_code in (LOCAL_ISSUER, SELF_SIGNED_IN_CHAIN)
    other_srv = tmp_path / "srv2"
    cert_path, key_path = pki.ensure_server_cert(ca, other_srv, ["127.0.0.1"], now=real_now())
    with https_server(cert_path, key_path) as port:
        assert refused(f"https://localhost:{port}/", good).verify_code == HOSTNAME_MISMATCH


# --- the fleet server over HTTPS -------------------------------------------------------------------------


Serve = Callable[..., BackgroundServer]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    servers: list[BackgroundServer] = []

    def start(**overrides: Any) -> BackgroundServer:
        config = ServerConfig(port=0, database=tmp_path / "fleet.db", **overrides)
        server = BackgroundServer(config).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def healthz(url: str, context: ssl.SSLContext | None) -> Any:
    status, body = fetch(url + "/healthz", context)
    assert status == 200
    return json.loads(body)


def peer_fingerprint(url: str, context: ssl.SSLContext) -> str:
    import hashlib
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    with (
        socket.create_connection((parts.hostname, parts.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


async def test_fleet_server_speaks_https_with_its_own_ca(serve: Serve, tmp_path: Path) -> None:
    server = serve()
    keys = tmp_path / "fleet-keys"  # keys_dir unset: next to the database
    assert server.url.startswith("https://127.0.0.1:")
    assert server.ca_pem == (keys / "ca.crt").read_text()
    assert server.ca_fingerprint == pki.fingerprint(load_cert(keys / "ca.crt"))
    assert mode(keys / "ca.key") == 0o600 and mode(keys / "server.key") == 0o600
    assert sans(load_cert(keys / "server.crt")) == ({"localhost"}, {ip_address("127.0.0.1")})

    context = pinned_context(server.ca_pem)
    assert healthz(server.url, context) == {"status": "ok"}  # urllib, as the device does
    port = server.url.rsplit(":", 1)[1]
    assert healthz(f"https://localhost:{port}", context) == {"status": "ok"}

    async with aiohttp.ClientSession() as session:
        async with session.get(server.url + "/healthz", ssl=context) as resp:
            assert resp.status == 200 and await resp.json() == {"status": "ok"}
        stranger = pki.ensure_ca(tmp_path / "stranger", now=real_now())
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(server.url + "/healthz", ssl=pinned_context(pki.ca_pem(stranger)))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(server.url + "/healthz")  # the system store does not know the fleet CA

    assert refused(server.url + "/healthz", pinned_context(pki.ca_pem(stranger))).verify_code == LOCAL_ISSUER
    assert refused(server.url + "/healthz", None).verify_code in (LOCAL_ISSUER, SELF_SIGNED_IN_CHAIN)
    with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP to the TLS port gets no answer
        fetch(server.url.replace("https://", "http://") + "/healthz", None)


def test_fleet_server_certificate_follows_the_configured_names(serve: Serve, tmp_path: Path) -> None:
    server = serve(tls_hostnames=["fleet.example.org"], keys_dir=tmp_path / "keys")
    assert server.ca_pem == (tmp_path / "keys" / "ca.crt").read_text()
    context = pinned_context(server.ca_pem)
    assert refused(server.url + "/healthz", context).verify_code == IP_MISMATCH
    assert refused(server.url.replace("127.0.0.1", "localhost") + "/healthz", context).verify_code == HOSTNAME_MISMATCH


def test_fleet_ca_survives_restarts_and_a_damaged_one_stops_the_server(serve: Serve, tmp_path: Path) -> None:
    first = serve()
    pem = first.ca_pem
    assert pem is not None
    first.stop()
    second = serve()
    assert second.ca_pem == pem
    assert healthz(second.url, pinned_context(pem)) == {"status": "ok"}
    second.stop()
    (tmp_path / "fleet-keys" / "ca.key").write_bytes((tmp_path / "fleet-keys" / "server.key").read_bytes())
    with pytest.raises(pki.PKIError, match="does not belong to"):
        serve()
    assert (tmp_path / "fleet-keys" / "ca.crt").read_text() == pem


def test_fleet_server_renews_its_certificate_while_running(serve: Serve, tmp_path: Path) -> None:
    server = serve()
    assert server.ca_pem is not None
    context = pinned_context(server.ca_pem)
    served = peer_fingerprint(server.url, context)
    assert server.renew_certificate() is False
    assert peer_fingerprint(server.url, context) == served

    # the certificate on disk is now one that expires in 10 days: due for renewal
    keys = tmp_path / "fleet-keys"
    ca = pki.ensure_ca(keys, now=real_now())
    pki.ensure_server_cert(ca, keys, ["localhost", "127.0.0.1"], now=real_now() - timedelta(days=80))
    assert server.renew_certificate() is True
    renewed = pki.fingerprint(load_cert(keys / "server.crt"))
    assert load_cert(keys / "server.crt").not_valid_after_utc > real_now() + timedelta(days=89)
    assert peer_fingerprint(server.url, context) == renewed != served  # new connections get it, verified
    assert healthz(server.url, context) == {"status": "ok"}


def test_insecure_http_serves_plain_http_without_a_ca(serve: Serve, tmp_path: Path) -> None:
    server = serve(insecure_http=True)
    assert server.url.startswith("http://127.0.0.1:") and server.ca_pem is None
    assert healthz(server.url, None) == {"status": "ok"}
    assert not (tmp_path / "fleet-keys" / "ca.key").exists()
    with pytest.raises(urllib.error.URLError):
        fetch(server.url.replace("http://", "https://") + "/healthz", pinned_context(pki.ca_pem(pki_ca_in_memory())))


@pytest.mark.parametrize("insecure_http", [False, True])
def test_serve_forever_announces_where_and_what_to_pin(tmp_path: Path, insecure_http: bool) -> None:
    config = ServerConfig(port=0, database=tmp_path / "fleet.db", insecure_http=insecure_http)
    lines: list[str] = []
    announced, stop = threading.Event(), threading.Event()

    def announce(line: str) -> None:
        lines.append(line)
        if len(lines) == 2:
            announced.set()

    thread = threading.Thread(target=serve_forever, args=(config,), kwargs={"announce": announce, "stop": stop})
    thread.start()
    try:
        assert announced.wait(15), lines
        url = lines[0].split()[3]
        if insecure_http:
            assert url.startswith("http://") and "WARNING: plain HTTP" in lines[1]
            assert healthz(url, None) == {"status": "ok"}
        else:
            pem = (tmp_path / "fleet-keys" / "ca.crt").read_text()
            assert url.startswith("https://")
            assert pki.fingerprint(x509.load_pem_x509_certificate(pem.encode())) in lines[1]
            assert healthz(url, pinned_context(pem)) == {"status": "ok"}
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()
    with pytest.raises(OSError):
        fetch(url + "/healthz", None if insecure_http else pinned_context(pem))
