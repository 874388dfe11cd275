"""A device proof binds the full request target: method, path and the query string (issue 14, item 10).

The canonical form (``wire.canonical_query``): the decoded parameters, in the order sent, each name and
value percent-encoded as UTF-8 with only ``A-Za-z0-9-._~`` left as they are. The server computes it from
``request.query`` (what handlers read); a proof without ``htq`` (an agent from before query binding) stands
for "no query".
"""

import urllib.parse

import jwt
import pytest
from yarl import URL

from fleet.app import create_app
from fleet.config import ServerConfig
from tests.fleet.helpers import enroll_device
from wardsight import wire

JOBS = wire.JOBS_PATH
UPDATE = wire.UPDATE_PATH


@pytest.fixture
async def client(aiohttp_client, db_path, clock):
    config = ServerConfig(database=db_path, credential_ttl_seconds=3600, nonce_ttl_seconds=60)
    return await aiohttp_client(create_app(config, clock=clock))


async def error(resp):
    body = await resp.json()
    return resp.status, body["error"]


def claims(proof: str) -> dict:
    return jwt.decode(proof, options={"verify_signature": False})


# ---- the canonical form ---------------------------------------------------------------------------------


def test_spellings_that_decode_alike_have_one_canonical_form():
    pairs = [("p", "/a/b/c"), ("s", " "), ("s", " "), ("e", ""), ("u", "€")]
    forms = {
        wire.canonical_query("p=%2fa%2Fb/c&s=+&s=%20&e&u=%e2%82%ac"),
        wire.canonical_query("p=/a/b/c&s=%20&s=+&e=&u=%E2%82%AC"),
        wire.canonical_query(pairs),
        wire.canonical_query(urllib.parse.urlencode(pairs)),
        wire.canonical_query(URL("/x").with_query(pairs).raw_query_string),  # as the aiohttp client spells it
    }
    assert forms == {"p=%2Fa%2Fb%2Fc&s=%20&s=%20&e=&u=%E2%82%AC"}
    assert wire.canonical_query("") == wire.canonical_query([]) == wire.canonical_query("&&") == ""


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("wait=1", "wait=25"),
        ("wait=1", "wait=1&extra="),
        ("a=1&b=2", "b=2&a=1"),  # order of names
        ("a=1&a=2", "a=2&a=1"),  # order of a repeated name's values: query.get("a") differs
        ("a=1%262", "a=1&2"),  # an encoded '&' is part of the value
        ("a=b%3Dc", "a%3Db=c"),  # so is an encoded '='
        ("p=%252F", "p=%2F"),  # an encoded '%'
        ("k=+", "k=%2B"),  # '+' is a space, '%2B' a plus
        ("e=", "e=%00"),
    ],
)
def test_queries_that_decode_differently_have_different_forms(one, other):
    assert wire.canonical_query(one) != wire.canonical_query(other)


def test_a_proof_without_a_query_keeps_the_old_form_and_one_with_a_query_binds_it():
    key = wire.generate_key()
    common = dict(method="GET", path=JOBS, body=b"", nonce="n" * 32, credential=None, now=0.0)
    bare = claims(wire.sign_proof(key, "dev-1", **common))
    assert "htq" not in bare  # what an agent from before query binding signs, byte for byte the same claims
    bound = wire.verify_proof(wire.sign_proof(key, "dev-1", query="wait=25&update=", **common), key.public_key())
    assert (bound.htu, bound.htq) == (JOBS, "wait=25&update=")
    for bad in ("", "wait=1 ", "wait=1#x", "x" * (wire.MAX_PROOF_QUERY + 1)):
        with pytest.raises(ValueError):
            wire.Proof(**{**bare, "htq": bad})


# ---- the server binds it --------------------------------------------------------------------------------


async def test_a_proof_for_wait_1_is_refused_with_wait_25_and_still_good_for_wait_1(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    proof = device.proof("GET", f"{JOBS}?wait=1")
    changed = await device.send("GET", f"{JOBS}?wait=25", proof=proof)  # changed in flight
    assert await error(changed) == (401, "proof does not match the request's query string")
    stripped = await device.send("GET", JOBS, proof=proof)
    assert await error(stripped) == (401, "proof does not match the request's query string")
    # The refusals did not use the proof up: it is good for the request it was made for, once.
    assert (await device.send("GET", f"{JOBS}?wait=1", proof=proof)).status == 200
    assert (await device.send("GET", f"{JOBS}?wait=1", proof=proof)).status == 401  # replay


@pytest.mark.parametrize(
    ("signed", "sent"),
    [
        ("wait=0&update=", "wait=0&update=&update="),  # a parameter added
        ("wait=0&update=a", "wait=0"),  # removed
        ("wait=0&update=a&update=b", "wait=0&update=b&update=a"),  # a repeated one's values reordered
        ("update=a&wait=0", "wait=0&update=a"),  # names reordered
    ],
)
async def test_any_change_to_the_parameters_is_refused(client, db_path, clock, signed, sent):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    resp = await device.send("GET", f"{JOBS}?{sent}", proof=device.proof("GET", f"{JOBS}?{signed}"))
    assert resp.status == 401, await resp.text()


NASTY = [
    ("wait", "0"),
    ("update", ""),  # empty value
    ("q", "a b+c"),  # space and plus
    ("q", "/x/y?z=1&w"),  # repeated name; '/', '?', '=', '&' in a value
    ("pct", "100%"),
    ("pct", "%2F"),  # looks encoded, is not
    ("u", "Zimmer 3B-12 — Bett ü €"),  # unicode
    ("ключ", "值"),  # unicode name
    ("", "no name"),
]


@pytest.mark.parametrize("path", [JOBS, UPDATE])
async def test_encoded_unicode_repeated_and_empty_parameters_verify(client, db_path, clock, path):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    # Signed from the decoded pairs; the aiohttp client encodes them its own way (yarl), and the server decodes.
    url = URL(path).with_query(NASTY)
    proof = wire.sign_proof(
        device.key, device.device_id, method="GET", path=path, query=NASTY, body=b"",
        nonce=device.nonce, credential=device.credential, now=clock(),
    )  # fmt: skip
    headers = {wire.PROOF_HEADER: proof, "Authorization": f"{wire.AUTH_SCHEME} {device.credential}"}
    resp = await client.get(url, headers=headers)
    assert resp.status in (200, 204), await resp.text()
    # The same proof, made from the query string urllib spells, binds the same thing.
    assert claims(proof)["htq"] == wire.canonical_query(urllib.parse.urlencode(NASTY))


async def test_a_raw_query_spelled_otherwise_than_signed_still_verifies(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    proof = device.proof("GET", f"{JOBS}?wait=0&update=a%2fb+c&e")  # lowercase escape, '+', no '='
    sent = URL(f"{JOBS}?wait=0&update=a/b%20c&e=", encoded=True)  # sent as is (yarl does not re-encode it)
    resp = await client.get(sent, headers={wire.PROOF_HEADER: proof, "Authorization": f"WardSight {device.credential}"})
    assert resp.status == 200, await resp.text()


# ---- compatibility: proofs from agents before query binding ------------------------------------------------


async def test_an_old_agents_proof_still_works_without_a_query_and_is_refused_with_one(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)  # its credential came through an old-form proof (no htq)
    await device.fetch_nonce()
    old = device.proof("GET", UPDATE)  # no query: exactly what the old agent signs
    assert "htq" not in claims(old)
    assert (await device.send("GET", UPDATE, proof=old)).status == 204
    assert (await device.post_event()).status == 201  # events, heartbeats, renewal: no query, unchanged
    assert (await device.renew()).status == 200
    # The old agent's jobs long poll: its proof names the path only, so the query it carries is refused.
    legacy = await device.send("GET", f"{JOBS}?wait=25&update=", proof=device.proof("GET", JOBS))
    status, reason = await error(legacy)
    assert status == 401 and "does not cover the query string" in reason and "update it" in reason
    # A query on a path whose handler reads none is refused all the same: nothing unbound gets through.
    assert (await device.send("GET", f"{UPDATE}?x=1", proof=device.proof("GET", UPDATE))).status == 401
    # An empty query ("?" alone) is no query.
    assert (await device.send("GET", f"{UPDATE}?", proof=device.proof("GET", UPDATE))).status == 204


async def test_htq_is_the_one_new_claim_and_the_proof_schema_stays_closed(client, db_path, clock):
    device = await enroll_device(client, db_path, clock)
    await device.fetch_nonce()
    payload = {**claims(device.proof("GET", f"{JOBS}?wait=0")), "htq2": "wait=0"}
    forged = jwt.encode(
        payload, device.key, algorithm="EdDSA", headers={"kid": device.device_id, "typ": wire.PROOF_TYP}
    )
    resp = await device.send("GET", f"{JOBS}?wait=0", proof=forged)
    status, reason = await error(resp)
    assert status == 401 and "malformed proof" in reason
