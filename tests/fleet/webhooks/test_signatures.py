import base64

import pytest
from click.testing import CliRunner

from wardsight import webhooks
from wardsight.errors import WardSightError
from wardsight.webhooks import WebhookKeyError, WebhookVerificationError, sign, verify

# Known-answer vector of the Standard Webhooks reference libraries (FLEET.md section 4).
KAT_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KAT_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
KAT_TS = 1614265330
KAT_BODY = b'{"test": 2432232314}'
KAT_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
KAT_HEADERS = {"webhook-id": KAT_ID, "webhook-timestamp": str(KAT_TS), "webhook-signature": KAT_SIG}


def test_kat_sign_reproduces_the_reference_signature():
    assert sign(KAT_ID, KAT_TS, KAT_BODY, hmac_secret=KAT_SECRET) == KAT_HEADERS


def test_kat_verifies():
    verify(KAT_HEADERS, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


def test_header_names_are_case_insensitive():
    verify({k.title(): v for k, v in KAT_HEADERS.items()}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


def test_v1a_round_trip():
    whsk, whpk = webhooks.new_ed25519_keypair()
    assert whsk.startswith("whsk_") and whpk.startswith("whpk_")
    assert len(base64.b64decode(whsk[5:])) == 32 and len(base64.b64decode(whpk[5:])) == 32
    headers = sign("msg_1", 1_790_000_000, b'{"type": "fall"}', ed25519_key=whsk)
    assert headers["webhook-signature"].startswith("v1a,")
    verify(headers, b'{"type": "fall"}', public_key=whpk, now=1_790_000_000)


def test_both_versions_in_one_header():
    whsk, whpk = webhooks.new_ed25519_keypair()
    secret = webhooks.new_hmac_secret()
    headers = sign("msg_1", 100, b"x", hmac_secret=secret, ed25519_key=whsk)
    assert [s.split(",")[0] for s in headers["webhook-signature"].split(" ")] == ["v1", "v1a"]
    verify(headers, b"x", hmac_secret=secret, now=100)
    verify(headers, b"x", public_key=whpk, now=100)


def test_tampered_body_fails():
    with pytest.raises(WebhookVerificationError, match="no v1 signature matches"):
        verify(KAT_HEADERS, b'{"test": 2432232315}', hmac_secret=KAT_SECRET, now=KAT_TS)
    whsk, whpk = webhooks.new_ed25519_keypair()
    headers = sign("msg_1", 100, b"body", ed25519_key=whsk)
    with pytest.raises(WebhookVerificationError, match="no v1a signature matches"):
        verify(headers, b"body ", public_key=whpk, now=100)


def test_tampered_id_or_timestamp_fails():
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify({**KAT_HEADERS, "webhook-id": KAT_ID + "x"}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify({**KAT_HEADERS, "webhook-timestamp": str(KAT_TS + 1)}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


def test_wrong_key_fails():
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify(KAT_HEADERS, KAT_BODY, hmac_secret=webhooks.new_hmac_secret(), now=KAT_TS)
    whsk, _ = webhooks.new_ed25519_keypair()
    _, other_pk = webhooks.new_ed25519_keypair()
    headers = sign("msg_1", 100, b"x", ed25519_key=whsk)
    with pytest.raises(WebhookVerificationError, match="no v1a signature"):
        verify(headers, b"x", public_key=other_pk, now=100)


def test_only_versions_of_the_given_keys_are_accepted():
    whsk, whpk = webhooks.new_ed25519_keypair()
    # A valid v1 signature does not satisfy a receiver that pinned a public key, and vice versa.
    with pytest.raises(WebhookVerificationError, match="no v1a signature"):
        verify(KAT_HEADERS, KAT_BODY, public_key=whpk, now=KAT_TS)
    headers = sign(KAT_ID, KAT_TS, KAT_BODY, ed25519_key=whsk)
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify(headers, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (KAT_TS + 301, "is 301 s old"),
        (KAT_TS - 301, "is 301 s in the future"),
    ],
)
def test_timestamp_outside_tolerance_fails(now, message):
    with pytest.raises(WebhookVerificationError, match=message):
        verify(KAT_HEADERS, KAT_BODY, hmac_secret=KAT_SECRET, now=now)


def test_timestamp_at_the_tolerance_edge_passes():
    verify(KAT_HEADERS, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS + 300)
    verify(KAT_HEADERS, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS - 300)
    with pytest.raises(WebhookVerificationError, match="old"):
        verify(KAT_HEADERS, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS + 11, tolerance=10)


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_fails(name):
    headers = {k: v for k, v in KAT_HEADERS.items() if k != name}
    with pytest.raises(WebhookVerificationError, match=f"missing header {name}"):
        verify(headers, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)
    with pytest.raises(WebhookVerificationError, match=f"missing header {name}"):
        verify({**KAT_HEADERS, name: ""}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


@pytest.mark.parametrize("timestamp", ["1614265330.0", "+1614265330", " 1614265330", "1_614_265_330", "abc"])
def test_malformed_timestamp_fails(timestamp):
    with pytest.raises(WebhookVerificationError, match="malformed webhook-timestamp"):
        verify({**KAT_HEADERS, "webhook-timestamp": timestamp}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


def test_id_with_a_dot_is_refused():
    with pytest.raises(WebhookVerificationError, match="malformed webhook-id"):
        verify({**KAT_HEADERS, "webhook-id": "msg.1"}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)
    with pytest.raises(ValueError, match="message id"):
        sign("msg.1", KAT_TS, KAT_BODY, hmac_secret=KAT_SECRET)


def test_one_valid_signature_among_several_suffices():
    whsk, whpk = webhooks.new_ed25519_keypair()
    other_sk, _ = webhooks.new_ed25519_keypair()
    noise = [
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # wrong MAC
        "v1,not-base64!",  # malformed entry
        "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",  # unknown version
        "garbage",
        sign(KAT_ID, KAT_TS, KAT_BODY, ed25519_key=other_sk)["webhook-signature"],  # old, rotated-out key
    ]
    listed = " ".join([*noise, KAT_SIG])
    verify({**KAT_HEADERS, "webhook-signature": listed}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)
    mine = sign(KAT_ID, KAT_TS, KAT_BODY, ed25519_key=whsk)["webhook-signature"]
    listed = " ".join([*noise, mine, KAT_SIG])
    verify({**KAT_HEADERS, "webhook-signature": listed}, KAT_BODY, public_key=whpk, now=KAT_TS)
    with pytest.raises(WebhookVerificationError, match="no v1 signature"):
        verify({**KAT_HEADERS, "webhook-signature": " ".join(noise)}, KAT_BODY, hmac_secret=KAT_SECRET, now=KAT_TS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hmac_secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "must start with 'whsec_'"),
        ({"hmac_secret": "whsec_not base64!"}, "not valid base64"),
        ({"hmac_secret": "whsec_" + base64.b64encode(b"short").decode()}, "24-64 bytes, not 5"),
        ({"hmac_secret": "whsec_" + base64.b64encode(bytes(65)).decode()}, "24-64 bytes, not 65"),
        ({"public_key": "whsk_" + base64.b64encode(bytes(32)).decode()}, "must start with 'whpk_'"),
        ({"public_key": "whpk_" + base64.b64encode(bytes(31)).decode()}, "32 bytes, not 31"),
        ({"public_key": "whpk_%%%"}, "not valid base64"),
        ({}, "no key to verify with"),
    ],
)
def test_malformed_keys_fail_verify(kwargs, message):
    with pytest.raises(WebhookKeyError, match=message) as info:
        verify(KAT_HEADERS, KAT_BODY, now=KAT_TS, **kwargs)
    assert isinstance(info.value, WebhookVerificationError) and isinstance(info.value, WardSightError)


def test_malformed_keys_fail_sign():
    _, whpk = webhooks.new_ed25519_keypair()
    with pytest.raises(WebhookKeyError, match="must start with 'whsk_'"):
        sign("msg_1", 1, b"x", ed25519_key=whpk)
    with pytest.raises(WebhookKeyError, match="32-byte seed, not 64"):
        sign("msg_1", 1, b"x", ed25519_key="whsk_" + base64.b64encode(bytes(64)).decode())
    with pytest.raises(ValueError, match="needs hmac_secret or ed25519_key"):
        sign("msg_1", 1, b"x")


def test_new_hmac_secret_is_random_and_well_formed():
    a, b = webhooks.new_hmac_secret(), webhooks.new_hmac_secret(24)
    assert a != b and len(base64.b64decode(a[6:])) == 32 and len(base64.b64decode(b[6:])) == 24
    with pytest.raises(ValueError):
        webhooks.new_hmac_secret(16)


# ---- CLI --------------------------------------------------------------------------------------------


def run_cli(*args, body=KAT_BODY):
    return CliRunner().invoke(webhooks.verify_webhook, list(args), input=body)


KAT_ARGS = ["--id", KAT_ID, "--timestamp", str(KAT_TS), "--signature", KAT_SIG, "--now", str(KAT_TS)]


def test_cli_kat_from_stdin():
    result = run_cli(*KAT_ARGS, "--secret", KAT_SECRET)
    assert result.exit_code == 0, result.output
    assert result.output == "valid\n"


def test_cli_kat_from_file_and_env_secret(tmp_path):
    path = tmp_path / "body.json"
    path.write_bytes(KAT_BODY)
    result = CliRunner().invoke(
        webhooks.verify_webhook, [str(path), *KAT_ARGS], env={"WARDSIGHT_WEBHOOK_SECRET": KAT_SECRET}
    )
    assert result.exit_code == 0, result.output
    assert result.output == "valid\n"


def test_cli_public_key():
    whsk, whpk = webhooks.new_ed25519_keypair()
    sig = sign(KAT_ID, KAT_TS, KAT_BODY, ed25519_key=whsk)["webhook-signature"]
    args = ["--id", KAT_ID, "--timestamp", str(KAT_TS), "--signature", sig, "--now", str(KAT_TS)]
    assert run_cli(*args, "--public-key", whpk).output == "valid\n"


@pytest.mark.parametrize(
    ("body", "extra", "message"),
    [
        (KAT_BODY + b"\n", [], "no v1 signature matches"),
        (KAT_BODY, ["--now", str(KAT_TS + 3600)], "is 3600 s old"),
        (KAT_BODY, ["--secret", "whsec_x"], "not valid base64"),
    ],
)
def test_cli_invalid_exits_1_with_one_line(body, extra, message):
    args = [*KAT_ARGS, "--secret", KAT_SECRET, *extra]
    result = run_cli(*args, body=body)
    assert result.exit_code == 1
    assert message in result.output and result.output.count("\n") == 1


def test_cli_needs_a_key():
    result = run_cli(*KAT_ARGS)
    assert result.exit_code == 2 and "--secret" in result.output


def test_cli_help_has_an_example():
    result = CliRunner().invoke(webhooks.verify_webhook, ["--help"])
    assert result.exit_code == 0 and "Example:" in result.output
    assert "    wardsight verify-webhook body.json" in result.output
