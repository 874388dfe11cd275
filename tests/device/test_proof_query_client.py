"""The device's FleetClient binds the query string into its proofs, against a real TLS server on loopback.

The client sends the query in the form its proof binds (``wire.canonical_query``); a transport wrapper
stands in for whatever sits in the path: one that re-spells the query alike is harmless, one that changes a
parameter gets the request refused.
"""

import time
import urllib.parse

import jwt
import pytest

from firmware.identity import IdentityStore, tls_context
from firmware.transport import CredentialFile, FleetClient, NotAuthorizedError, http
from fleet.cli import create_token
from fleet.config import ServerConfig
from fleet.server import BackgroundServer
from tests.fleet.helpers import Clock, event_for
from wardsight import wire
from wardsight.bundle import Bundle

NASTY = [
    ("wait", "0"),
    ("update", ""),
    ("q", "a b+c"),
    ("q", "/x/y?z=1&w"),
    ("pct", "100%"),
    ("u", "Zimmer 3B-12 — Bett ü €"),
    ("ключ", "值"),
]


@pytest.fixture
def fleet(tmp_path):
    clock = Clock(time.time())
    config = ServerConfig(port=0, database=tmp_path / "fleet.db", credential_ttl_seconds=300, nonce_ttl_seconds=60)
    server = BackgroundServer(config, app_clock=clock).start()
    yield server, config, clock
    server.stop()


class Wire:
    """The transport the client is given: records each exchange and may rewrite the URL on its way."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []  # (url as sent, the proof's htq or None)
        self.rewrite = None

    def __call__(self, method, url, body, headers, context, timeout):
        if self.rewrite is not None and wire.PROOF_HEADER in headers:
            url = self.rewrite(url)
        proof = headers.get(wire.PROOF_HEADER)
        htq = jwt.decode(proof, options={"verify_signature": False}).get("htq") if proof else None
        self.sent.append((url, htq))
        return http(method, url, body, headers, context, timeout)


def enrolled(tmp_path, server, config, clock):
    store = IdentityStore(tmp_path / "device")
    identity, _ = store.enroll(
        Bundle(server.url, create_token(config, "3B-12", 600, now=clock()), server.ca_pem), "cam-1"
    )
    _, key = store.load()
    transport = Wire()
    client = FleetClient(
        identity.server_url,
        identity.device_id,
        key,
        CredentialFile(store.credential_path),
        context=tls_context(identity.server_url, store.ca_pem()),
        timeout=5.0,
        transport=transport,
    )
    return identity, client, key, transport


def test_the_client_binds_and_sends_encoded_unicode_repeated_and_empty_parameters(tmp_path, fleet):
    server, config, clock = fleet
    identity, client, key, transport = enrolled(tmp_path, server, config, clock)
    reply = client.request("GET", wire.JOBS_PATH, query=urllib.parse.urlencode(NASTY), timeout=10.0)
    assert reply.status == 200, reply.error
    url, htq = transport.sent[-1]
    assert url.endswith(f"{wire.JOBS_PATH}?{htq}") and htq == wire.canonical_query(NASTY)  # sent as signed
    # A query the caller did not encode at all (a space, unicode) is sent encoded, as the proof binds it.
    assert client.request("GET", wire.UPDATE_PATH, query="note=a b&u=€&e").status == 204
    assert transport.sent[-1][0].endswith("?note=a%20b&u=%E2%82%AC&e=")
    # The other device requests still carry no query and no htq (events, update polls): the old form.
    assert client.post_event("", wire.sign_event(event_for(identity.device_id), key)).status == 201
    assert client.request("GET", wire.UPDATE_PATH).status == 204
    assert {htq for url, htq in transport.sent if "?" not in url} == {None}


def test_a_query_respelled_in_flight_alike_passes_and_a_changed_one_is_refused(tmp_path, fleet):
    server, config, clock = fleet
    identity, client, key, transport = enrolled(tmp_path, server, config, clock)
    query = urllib.parse.urlencode([("wait", "1"), ("update", "a/b c"), ("e", "")])

    def respell(url):  # what another client library or a proxy might send: same parameters, other spelling
        if "?" not in url:
            return url
        return url.replace("%2F", "%2f").replace("%20", "+").removesuffix("&e=") + "&e"

    transport.rewrite = respell
    assert client.request("GET", wire.JOBS_PATH, query=query).status == 200
    assert transport.sent[-1][0].endswith("?wait=1&update=a%2fb+c&e")

    assert client.request("GET", wire.UPDATE_PATH).status == 204  # and leaves query-less requests be
    transport.rewrite = lambda url: url.replace("wait=1", "wait=25")
    with pytest.raises(NotAuthorizedError) as refused:
        client.request("GET", wire.JOBS_PATH, query=query)
    assert "query string" in str(refused.value)

    transport.rewrite = lambda url: url + "&extra=1" if "?" in url else url
    with pytest.raises(NotAuthorizedError):
        client.request("GET", wire.JOBS_PATH, query=query)
    transport.rewrite = lambda url: url + "?extra=1"  # onto a request that had no query
    with pytest.raises(NotAuthorizedError):
        client.request("GET", wire.UPDATE_PATH)

    transport.rewrite = None  # the client goes on after the refusals
    assert client.request("GET", wire.JOBS_PATH, query=query).status == 200
