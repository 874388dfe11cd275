"""The fleet's own certificate authority and the server's TLS certificate (X.509 via ``cryptography``).

Layout in the keys directory (the same one that holds the server's signing keys):

- ``ca.key`` (0600) and ``ca.crt``: a self-signed ECDSA P-256 CA, valid 10 years, made on first use. Devices
  pin ``ca.crt`` from their enrollment bundle, so it is never replaced silently: a corrupt or mismatched pair
  is an error for the operator to resolve.
- ``server.key`` (0600) and ``server.crt``: a short-lived leaf for the HTTPS listener, reissued whenever it
  is missing, unreadable, due for renewal, not issued by the current CA, or issued for other hostnames.

Creation is serialised with an advisory lock file, so two processes starting at once make one CA.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import ipaddress
import os
import ssl
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wardsight.errors import WardSightError
from wardsight.paths import write_file_atomically

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
SERVER_KEY = "server.key"
SERVER_CERT = "server.crt"
LOCK = ".pki.lock"

CA_LIFETIME = timedelta(days=3650)
BACKDATE = timedelta(minutes=5)  # clock skew between the server and its clients, as step-ca does

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PKIError(WardSightError):
    """The fleet CA or the server certificate cannot be used as found on disk."""


@dataclass(frozen=True)
class FleetCA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path


def ca_pem(ca: FleetCA) -> str:
    """The CA certificate as PEM text, for enrollment bundles (devices pin it)."""
    return ca.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, lowercase hex (``openssl x509 -fingerprint -sha256`` without colons)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise PKIError(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path} holds a {type(key).__name__}, not an ECDSA key")
    return key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise PKIError(f"{path} is not a PEM certificate ({exc})") from None


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return cert.public_key() == key.public_key()


_KEY_USAGES = tuple(inspect.signature(x509.KeyUsage).parameters)  # every usage: digital_signature, key_cert_sign, ...


def _key_usage(*allowed: str) -> x509.KeyUsage:
    """A key usage extension that allows ``allowed`` (x509.KeyUsage's argument names) and nothing else."""
    return x509.KeyUsage(**{usage: usage in allowed for usage in _KEY_USAGES})


def _certificate(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, now: datetime, until: datetime, *, ca: bool
) -> x509.CertificateBuilder:
    """What the CA's and the server's certificates share: names, key, a random serial, validity from ``now`` (less
    BACKDATE), basic constraints and key usage (a CA signs certificates and CRLs; the server signs its handshakes)."""
    usage = _key_usage("key_cert_sign", "crl_sign") if ca else _key_usage("digital_signature")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
    )


def _issue_ca_cert(key: ec.EllipticCurvePrivateKey, name: str, now: datetime) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        _certificate(subject, subject, key, now, now + CA_LIFETIME, ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _check_ca(ca: FleetCA, now: datetime) -> None:
    cert, path = ca.cert, ca.cert_path
    if not _same_key(cert, ca.key):
        raise PKIError(f"{path} does not belong to the key {ca.key_path}; restore the matching pair")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise PKIError(f"{path} is not a CA certificate")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(f"{path} is not a self-signed CA certificate") from None
    if now >= cert.not_valid_after_utc:
        raise PKIError(f"the fleet CA {path} expired on {cert.not_valid_after_utc:%Y-%m-%d}; it must be rotated")
    if now < cert.not_valid_before_utc:
        raise PKIError(
            f"the fleet CA {path} is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC;"
            " check this machine's clock"
        )


def ensure_ca(directory: Path, *, now: datetime, name: str = "WardSight fleet CA") -> FleetCA:
    """Load the fleet CA from ``directory``, creating it on first use.

    A missing certificate next to an existing key is (re)issued for that key: nothing was published yet, and
    a certificate for the same key and name validates the same server certificates. Every other damaged
    state (unreadable files, a certificate without its key, a pair that does not match) raises PKIError.
    """
    _require_aware(now)
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    with _locked(directory):
        if not key_path.exists():
            if cert_path.exists():
                raise PKIError(f"{cert_path} exists but its key {key_path} is missing; restore it from backup")
            key = ec.generate_private_key(ec.SECP256R1())
            write_file_atomically(key_path, _pem_key(key))
        else:
            key = _read_key(key_path)
        if not cert_path.exists():
            write_file_atomically(cert_path, _pem_cert(_issue_ca_cert(key, name, now)))
        ca = FleetCA(cert=_read_cert(cert_path), key=key, cert_path=cert_path, key_path=key_path)
    _check_ca(ca, now)
    return ca


def parse_hostnames(hostnames: list[str]) -> list[x509.GeneralName]:
    """DNS names and IP addresses (``[::1]`` or ``::1``) as subjectAltName entries, duplicates dropped."""
    if not hostnames:
        raise PKIError("the server certificate needs at least one hostname or IP address")
    names: list[x509.GeneralName] = []
    for raw in hostnames:
        host = raw.strip()
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host.removeprefix("[").removesuffix("]")))
        except ValueError:
            label = host.lower().rstrip(".")
            if not label or not label.isascii() or any(c.isspace() or c in "/:@" for c in label):
                raise PKIError(f"'{raw}' is not a DNS name (use its punycode form) or IP address") from None
            name = x509.DNSName(label)
        if name not in names:
            names.append(name)
    return names


def _san_set(names: list[x509.GeneralName]) -> set[str | IPAddress]:
    found: set[str | IPAddress] = set()
    for name in names:
        value = name.value if isinstance(name, x509.DNSName | x509.IPAddress) else None
        if isinstance(value, str | ipaddress.IPv4Address | ipaddress.IPv6Address):
            found.add(value)
        else:
            found.add(repr(name))  # anything else (a network, a URI) makes the set differ from the wanted one
    return found


def _issue_server_cert(
    ca: FleetCA, key: ec.EllipticCurvePrivateKey, names: list[x509.GeneralName], now: datetime, lifetime: timedelta
) -> x509.Certificate:
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    not_after = min(now + lifetime, ca.cert.not_valid_after_utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "WardSight fleet server")])
    return (
        _certificate(subject, ca.cert.subject, key, now, not_after, ca=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def _reusable(
    ca: FleetCA, cert_path: Path, key_path: Path, wanted: set[str | IPAddress], now: datetime, renew: timedelta
) -> bool:
    """True if the leaf on disk is sound, from ``ca``, for exactly ``wanted`` and not due for renewal."""
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        cert, key = _read_cert(cert_path), _read_key(key_path)
        cert.verify_directly_issued_by(ca.cert)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (PKIError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (
        _same_key(cert, key)
        and _san_set(list(names)) == wanted
        and cert.not_valid_before_utc <= now
        and cert.not_valid_after_utc - now > renew
    )


def ensure_server_cert(
    ca: FleetCA,
    directory: Path,
    hostnames: list[str],
    *,
    now: datetime,
    lifetime_days: int = 90,
    renew_before_days: int = 30,
) -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)`` of a server certificate from ``ca`` for ``hostnames``, issuing one if due.

    A new certificate (with a new key) is issued when none is usable, when it expires within
    ``renew_before_days`` or is not yet valid, when it was not signed by ``ca``, or when its names differ
    from ``hostnames``. ``notBefore`` is backdated by five minutes for clients whose clocks run behind.
    """
    _require_aware(now)
    if not 0 <= renew_before_days < lifetime_days:
        raise ValueError("renew_before_days must be at least 0 and less than lifetime_days")
    names = parse_hostnames(hostnames)
    cert_path, key_path = directory / SERVER_CERT, directory / SERVER_KEY
    with _locked(directory):
        if not _reusable(ca, cert_path, key_path, _san_set(names), now, timedelta(days=renew_before_days)):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue_server_cert(ca, key, names, now, timedelta(days=lifetime_days))
            write_file_atomically(key_path, _pem_key(key))
            write_file_atomically(cert_path, _pem_cert(cert))
    return cert_path, key_path


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side context (TLS 1.2 or later) presenting ``cert_path`` with ``key_path``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise PKIError(f"cannot load the server certificate {cert_path} with {key_path}: {exc}") from None
    return context
