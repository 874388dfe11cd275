"""The device's TLS client context: trust only the fleet CA pinned from the enrollment bundle.

The context never loads the system trust store, always verifies the certificate chain up to the pinned CA
and the server's name (DNS name or IP address in subjectAltName), and speaks TLS 1.2 or later. It is made
for ``urllib.request.urlopen(..., context=...)`` and ``aiohttp`` alike.

Clocks: a Raspberry Pi has no real-time clock, so until NTP has run a device may believe it is 1970 or some
date years away, and OpenSSL compares every certificate's validity window with the system clock. With
``ignore_clock=True`` the context sets OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME`` (Python's ``ssl.VerifyFlags``
has no name for it, but ``verify_flags`` passes the bit through to ``X509_VERIFY_PARAM_set_flags``): the
signature chain to the pinned CA, the CA constraints and the hostname are still checked, only the
notBefore/notAfter comparisons are skipped. That is acceptable because the only trust anchor is the fleet's
own CA and the server's certificate lives 90 days; the device should use it only while its clock is not
known to be right (e.g. until it has synchronised time, or learnt the time from the server's ``Date``).
"""

from __future__ import annotations

import ssl

from wardsight.errors import WardSightError

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME (x509_vfy.h, since OpenSSL 1.1.0).
X509_V_FLAG_NO_CHECK_TIME = 0x200000

_PEM_CERT_BEGIN = "-----BEGIN CERTIFICATE-----"


class PinningError(WardSightError):
    """The pinned CA certificate cannot be used."""


def pinned_context(ca_pem: str, *, ignore_clock: bool = False) -> ssl.SSLContext:
    """A client context trusting only the CA certificate(s) in ``ca_pem``, with hostname verification.

    ``ignore_clock=True`` skips the certificates' validity-time checks (see the module docstring) and keeps
    every other check.
    """
    if _PEM_CERT_BEGIN not in ca_pem:
        raise PinningError("the pinned fleet CA is not a PEM certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname, no CA loaded
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cadata=ca_pem)
    except (ssl.SSLError, ValueError) as exc:
        raise PinningError(f"the pinned fleet CA cannot be loaded: {exc}") from None
    if not any(cert.get("issuer") for cert in context.get_ca_certs()):
        raise PinningError("the pinned fleet CA holds no certificate")
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    if ignore_clock:
        context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
        if not context.verify_flags & X509_V_FLAG_NO_CHECK_TIME:
            raise PinningError(f"this TLS library ({ssl.OPENSSL_VERSION}) cannot skip certificate time checks")
    return context
