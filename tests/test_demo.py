"""`wardsight demo` end to end in a subprocess: real server, real model, real footage, real SQLite."""

import base64
import hashlib
import json
import os
import re
import shlex
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import ROOT

EVENT_LINE = re.compile(r"^event \d\d:\d\d:\d\d (\w+) (\w+) \((info|warning|critical)\) in demo-room-101$")


def _start_demo(data_dir, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
    demo = [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir), "demo", "--port", "0", *args]
    proc = subprocess.Popen(demo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    return proc, env


def _read_until(proc, prefix, lines, timeout=60):
    """The first line (stripped) starting with ``prefix``, reading the demo's output into ``lines``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith(prefix):
            return line.strip()
    raise AssertionError(f"the demo never printed {prefix!r}: {lines}")


def _sign_in(url, tls, username, password):
    body = json.dumps({"username": username, "password": password}).encode()
    signin = urllib.request.Request(url + "api/v1/session", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(signin, timeout=10, context=tls) as resp:
        return resp.headers["Set-Cookie"].split(";")[0], json.loads(resp.read())["role"]


def _operators(url, tls, cookie):
    """The console's account list (admins only): the accounts' roles, or the HTTP status it was refused with."""
    listed = urllib.request.Request(url + "api/v1/operators", headers={"Cookie": cookie})
    try:
        return {
            o["username"]: o["role"]
            for o in json.loads(urllib.request.urlopen(listed, timeout=5, context=tls).read())["operators"]
        }
    except urllib.error.HTTPError as exc:
        return exc.code


def _spki(cert_path):
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_demo_runs_end_to_end(data_dir_with_models, tmp_path):
    proc, env = _start_demo(data_dir_with_models, tmp_path, "--duration", "12")
    lines = []
    url = _read_until(proc, "console: ", lines).split()[1]
    bundle = tmp_path / "bundles" / "b.json"  # a token and bundle for the running demo, made alongside (checked below)
    bundle.parent.mkdir()
    create = [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir_with_models / "demo"), "fleet", "token",
              "create", "--room", "9Z-01", "--bundle", str(bundle)]  # fmt: skip
    made = subprocess.Popen(create, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    login = _read_until(proc, "sign in as ", lines).split()
    login = login[3], login[5]
    assert "a viewer account" in lines[-1], lines  # the default: a viewer
    admin_command = _read_until(proc, "wardsight --data-dir ", lines)
    ca_line = _read_until(proc, "fleet CA ", lines)
    chromium = _read_until(proc, "chromium ", lines)
    assert url and url.startswith("https://127.0.0.1:") and login, lines
    keys = data_dir_with_models / "demo" / "fleet-keys"
    ca_der = x509.load_pem_x509_certificate((keys / "ca.crt").read_bytes()).public_bytes(Encoding.DER)
    assert f"{keys / 'ca.crt'} (sha256 {hashlib.sha256(ca_der).hexdigest()})" in ca_line
    # The browser instruction pins the key the server presents, in a throwaway profile, and opens the console.
    assert f"--ignore-certificate-errors-spki-list={_spki(keys / 'server.crt')} {url}" in chromium
    assert '--user-data-dir="$(mktemp -d)"' in chromium
    # While it runs, the console answers over TLS with the fleet's own CA, and its API only after signing in.
    tls = ssl.create_default_context(cafile=str(data_dir_with_models / "demo" / "fleet-keys" / "ca.crt"))
    page = urllib.request.urlopen(url, timeout=5, context=tls).read().decode()
    assert "WardSight fleet console" in page
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "api/v1/devices", timeout=5, context=tls)
    assert refused.value.code == 401
    cookie, role = _sign_in(url, tls, *login)
    assert role == "viewer" and _operators(url, tls, cookie) == 403
    listed = urllib.request.Request(url + "api/v1/devices", headers={"Cookie": cookie})
    devices = json.loads(urllib.request.urlopen(listed, timeout=5, context=tls).read())["devices"]
    assert [d["name"] for d in devices] == ["demo-camera"]

    # The printed admin command, as printed (with the password on stdin), next to the running demo.
    argv = shlex.split(admin_command)
    assert argv[0] == "wardsight" and argv[1:3] == ["--data-dir", str((data_dir_with_models / "demo").resolve())]
    password = "a demo admin's password"
    added = subprocess.run([sys.executable, "-m", "wardsight", *argv[1:], "--password-stdin"], input=password + "\n",
                           capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)  # fmt: skip
    assert added.returncode == 0, added.stderr
    admin_cookie, admin_role = _sign_in(url, tls, argv[-3], password)
    assert admin_role == "admin" and _operators(url, tls, admin_cookie) == {"demo": "viewer", argv[-3]: "admin"}

    # A bundle made next to the running demo names the port it really listens on (--port 0), not the default.
    assert made.wait(timeout=60) == 0, made.stderr.read()
    assert json.loads(bundle.read_text())["server_url"] == url.rstrip("/")

    # Asking whether one is signed in is not a refusal; a refusal that repeats is printed once (within a minute).
    who = json.loads(urllib.request.urlopen(url + "api/v1/session", timeout=5, context=tls).read())
    assert who == {"signed_in": False}
    for _ in range(3):
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "api/v1/devices", timeout=5, context=tls)

    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    lines.append(out)
    assert "events:" in out and "Traceback" not in err
    assert "/api/v1/session from" not in err, err
    assert len(re.findall(r"GET /api/v1/devices from \S+ rejected \(401\)", err)) == 1, err  # 4 refused, 1 printed

    db = sqlite3.connect(data_dir_with_models / "demo" / "fleet.db")
    events = db.execute("select app, type, data, device_id from events order by time").fetchall()
    device_ids = [r[0] for r in db.execute("select id from devices")]
    assert len(device_ids) == 1
    # The footage has a cyclist in view for over a second in its first 10 s: 0 -> 1 must be reported.
    assert events, "no event reached the database"
    assert events[0][:2] == ("occupancy", "count_changed") and events[0][3] == device_ids[0]
    assert json.loads(events[0][2])["count"] >= 1
    # Each event as it arrived, one line of metadata (never its data), in the order the server stored them.
    printed = [EVENT_LINE.match(line) for line in "".join(lines).splitlines() if line.startswith("event ")]
    assert printed and all(printed), "".join(lines)
    assert [m.group(1, 2) for m in printed] == [e[:2] for e in events[: len(printed)]]
    assert len(printed) >= len(events) - 1  # the demo reads the store until it stops; one may arrive as it stops

    # Nothing but the database, the identity and the fetched files exist: no frame was written anywhere.
    written = {p.relative_to(data_dir_with_models).as_posix() for p in data_dir_with_models.rglob("*") if p.is_file()}
    allowed_prefixes = (
        "models/",
        "demo.lock",  # empty: held while the demo runs, so a second demo cannot delete this one's database
        "demo/fleet.db",
        "demo/fleet-keys/",  # the fleet CA, the server's certificate and signing keys
        "demo/ota/",  # the server's TUF repository (initialised with the demo's keys, no package yet)
        "demo/ota-demo-keys/",  # the demo's offline root and targets keys (marked as demo keys)
        "demo/device/ota/",  # the device's TUF root of trust and the metadata it fetched
        "demo/device/key.pem",
        "demo/device/identity.json",
        "demo/device/fleet-ca.pem",
        "demo/device/credential.json",
        "demo/device/outbox.db",
        "demo/device/jobs.db",  # executed maintenance job ids and undelivered job reports
    )  # the outbox holds signed metadata events only
    assert all(p.startswith(allowed_prefixes) for p in written), written
    assert not list(tmp_path.glob("*.*")), "the demo wrote into its working directory"
    assert (ROOT / "wardsight").is_dir()


def test_demo_admin_makes_its_one_off_account_an_admin(data_dir_with_models, tmp_path):
    not_a_video = tmp_path / "not-a-video.mp4"  # the agent cannot start: only the server and console matter here
    not_a_video.write_text("no frames\n")
    proc, _ = _start_demo(data_dir_with_models, tmp_path, "--admin", "--duration", "6", "--video", str(not_a_video))
    lines = []
    try:
        url = _read_until(proc, "console: ", lines).split()[1]
        login = _read_until(proc, "sign in as ", lines).split()
        assert "an admin account" in lines[-1], lines
        _read_until(proc, "fleet CA ", lines)
        assert not any("fleet operator add" in line for line in lines), lines  # no need for another account
        tls = ssl.create_default_context(cafile=str(data_dir_with_models / "demo" / "fleet-keys" / "ca.crt"))
        cookie, role = _sign_in(url, tls, login[3], login[5])
        assert role == "admin" and _operators(url, tls, cookie) == {"demo": "admin"}
    finally:
        proc.communicate(timeout=90)


# ---- the terminal kept readable (wardsight_cli.repeats) ----------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _terminal(window=60.0):
    """A logger printing as `wardsight` does, to a buffer, through a RepeatLimiter on a clock the test moves."""
    import io
    import logging

    from wardsight_cli.repeats import RepeatCountFormatter, RepeatLimiter

    clock, out = _Clock(), io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RepeatCountFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s")))
    handler.addFilter(RepeatLimiter(window, clock=clock))
    logger = logging.getLogger(f"test.repeats.{id(out)}")
    logger.propagate, logger.level = False, logging.DEBUG
    logger.addHandler(handler)
    return logger, clock, out


def test_a_repeated_refusal_is_printed_once_a_minute_with_a_count():
    log, clock, out = _terminal()
    refusal = "%s %s from %s rejected (%d): %s"
    for _ in range(120):  # a quarantined device, two a second for a minute
        log.warning(refusal, "POST", "/api/v1/device/heartbeat", "127.0.0.1", 403, "device is quarantined")
        clock.now += 0.5
    log.warning(refusal, "POST", "/api/v1/session", "10.0.0.9", 401, "invalid username or password")  # another
    log.info("an info line")
    log.info("an info line")  # below WARNING: untouched
    log.warning(refusal, "POST", "/api/v1/device/heartbeat", "127.0.0.1", 403, "device is quarantined")
    name = f"test.repeats.{id(out)}"
    heartbeat = f"WARNING {name}: POST /api/v1/device/heartbeat from 127.0.0.1 rejected (403): device is quarantined"
    assert out.getvalue().splitlines() == [
        heartbeat,
        f"WARNING {name}: POST /api/v1/session from 10.0.0.9 rejected (401): invalid username or password",  # at once
        f"INFO {name}: an info line",
        f"INFO {name}: an info line",
        f"{heartbeat} [119 more like this in the last 60 s, not shown]",  # the 121st, a minute after the first
    ]
    clock.now += 30
    log.warning(refusal, "POST", "/api/v1/device/heartbeat", "127.0.0.1", 403, "device is quarantined")  # held back
    clock.now += 30
    log.warning(refusal, "POST", "/api/v1/device/heartbeat", "127.0.0.1", 403, "device is quarantined")
    assert out.getvalue().splitlines()[5:] == [f"{heartbeat} [1 more like this in the last 60 s, not shown]"]


def test_only_the_terminal_handler_is_limited(tmp_path):
    import io
    import logging

    from wardsight_cli.repeats import limit_repeats

    logger = logging.getLogger("test.repeats.handlers")
    logger.propagate, logger.level = False, logging.DEBUG
    terminal, kept = logging.StreamHandler(io.StringIO()), logging.FileHandler(tmp_path / "all.log")
    for handler in (terminal, kept):
        logger.addHandler(handler)
    try:
        assert limit_repeats(logger) == [terminal] and limit_repeats(logger) == [terminal]  # once, however called
        for _ in range(3):
            logger.error("the agent crashed")
        assert terminal.stream.getvalue().splitlines() == ["the agent crashed"]
        kept.flush()
        assert (tmp_path / "all.log").read_text().splitlines() == ["the agent crashed"] * 3
    finally:
        for handler in (terminal, kept):
            logger.removeHandler(handler)
            handler.close()
