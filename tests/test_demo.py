"""`wardsight demo` end to end in a subprocess: real server, real model, real footage, real SQLite."""

import json
import os
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT


def test_demo_runs_end_to_end(data_dir_with_models, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wardsight",
            "--data-dir",
            str(data_dir_with_models),
            "demo",
            "--duration",
            "12",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    lines = []
    url = login = None
    deadline = time.monotonic() + 60
    while login is None and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("console: "):
            url = line.split()[1]
        if line.startswith("sign in as "):
            login = line.split()[3], line.split()[5]
    assert url and url.startswith("https://127.0.0.1:") and login, lines
    # While it runs, the console answers over TLS with the fleet's own CA, and its API only after signing in.
    tls = ssl.create_default_context(cafile=str(data_dir_with_models / "demo" / "fleet-keys" / "ca.crt"))
    page = urllib.request.urlopen(url, timeout=5, context=tls).read().decode()
    assert "WardSight fleet console" in page
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "api/v1/devices", timeout=5, context=tls)
    assert refused.value.code == 401
    body = json.dumps({"username": login[0], "password": login[1]}).encode()
    signin = urllib.request.Request(url + "api/v1/session", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(signin, timeout=10, context=tls) as resp:
        cookie = resp.headers["Set-Cookie"].split(";")[0]
    listed = urllib.request.Request(url + "api/v1/devices", headers={"Cookie": cookie})
    devices = json.loads(urllib.request.urlopen(listed, timeout=5, context=tls).read())["devices"]
    assert [d["name"] for d in devices] == ["demo-camera"]

    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    lines.append(out)
    assert "events:" in out and "Traceback" not in err

    db = sqlite3.connect(data_dir_with_models / "demo" / "fleet.db")
    events = db.execute("select app, type, data, device_id from events order by time").fetchall()
    device_ids = [r[0] for r in db.execute("select id from devices")]
    assert len(device_ids) == 1
    # The footage has a cyclist in view for over a second in its first 10 s: 0 -> 1 must be reported.
    assert events, "no event reached the database"
    assert events[0][:2] == ("occupancy", "count_changed") and events[0][3] == device_ids[0]
    assert json.loads(events[0][2])["count"] >= 1

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
