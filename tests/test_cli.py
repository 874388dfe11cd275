import json
from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner

from fleet.config import ServerConfig, load_server_config
from fleet.server import BackgroundServer
from wardsight_cli.main import cli


def all_commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from all_commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in all_commands(cli)], ids=" ".join)
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "wardsight " in result.output.split("Example:")[1]


def run(args, tmp_path, **kw):
    return CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "data"), *args], **kw)


@pytest.mark.parametrize(
    "args, message",
    [
        (["fleet", "token", "create", "--room", "bad room"], "room 'bad room' must be"),
        (["device", "run"], "not enrolled"),
        (["device", "show"], "not enrolled"),
        (["models", "fetch", "nope"], "unknown model 'nope'"),
        (
            ["device", "enroll", "--server", "http://127.0.0.1:9", "--token", "wst.x.y", "--insecure-http"],
            "enroll: token is malformed",
        ),
        (["device", "enroll", "--server", "http://127.0.0.1:9", "--token", "wst.x.y"], "development flag"),
        (["device", "enroll", "--server", "https://127.0.0.1:9", "--token", "wst.x.y"], "fleet CA"),
        (["fleet", "serve", "--config", "/nonexistent.toml"], "config file not found"),
        (
            ["provision", "bundle", "--server", "ftp://x", "--token", "wst.a.b", "--out", "b.json"],
            "must start with https://",
        ),
    ],
)
def test_user_errors_are_one_line_without_traceback(tmp_path, args, message):
    result = run(args, tmp_path)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_corrupt_device_config_is_one_line(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "device.toml").write_text("threads = = 2")
    result = run(["device", "run"], tmp_path)
    assert result.exit_code == 1 and "not valid TOML" in result.output


def test_token_bundle_enroll_show(tmp_path):
    server_data = tmp_path / "server"
    token = CliRunner().invoke(cli, ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-07"])
    assert token.exit_code == 0, token.output
    plaintext = token.output.strip()
    assert plaintext.startswith("wst.")
    server = BackgroundServer(ServerConfig(port=0, database=server_data / "fleet.db")).start()
    try:
        bundle = tmp_path / "bundle.json"
        ca = ["--ca", str(server.ca_path)]
        out = run(
            ["provision", "bundle", "--server", server.url, "--token", plaintext, *ca, "--out", str(bundle)], tmp_path
        )
        assert out.exit_code == 0 and bundle.stat().st_mode & 0o777 == 0o600
        enrolled = run(["device", "enroll", "--bundle", str(bundle), "--name", "cam-4a07"], tmp_path)
        assert enrolled.exit_code == 0, enrolled.output
        assert "in room 4A-07" in enrolled.output
        key = tmp_path / "data" / "device" / "key.pem"
        assert key.stat().st_mode & 0o777 == 0o600
        shown = run(["device", "show"], tmp_path)
        assert "cam-4a07" in shown.output and "PRIVATE" not in shown.output
        again = run(["device", "enroll", "--bundle", str(bundle)], tmp_path)
        assert again.exit_code == 1 and "already enrolled" in again.output
        listed = CliRunner().invoke(cli, ["--data-dir", str(server_data), "fleet", "devices"])
        assert json.loads(listed.output.splitlines()[0])["name"] == "cam-4a07"
    finally:
        server.stop()


def test_used_token_is_refused_to_a_second_device(tmp_path):
    server_data = tmp_path / "server"
    plaintext = (
        CliRunner()
        .invoke(cli, ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-07"])
        .output.strip()
    )
    server = BackgroundServer(ServerConfig(port=0, database=server_data / "fleet.db")).start()
    try:
        args = ["device", "enroll", "--server", server.url, "--token", plaintext, "--ca", str(server.ca_path)]
        first = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "d1"), *args])
        assert first.exit_code == 0, first.output
        second = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "d2"), *args])
        assert second.exit_code == 1 and "already used" in second.output
    finally:
        server.stop()


def test_ota_package_builds_a_package_the_library_can_read(tmp_path):
    from wardsight import modelpkg

    model = tmp_path / "movenet.tflite"
    model.write_bytes(b"\x00model bytes" * 100)
    out = tmp_path / "m.wsm"
    args = ["ota", "package", "--name", "movenet-multipose", "--version", "1.1", "--task", "pose", "--license",
            "Apache-2.0", "--build", f"cpu:litert:movenet_multipose:{model}", "--input", "long_side=256",
            "--out", str(out)]  # fmt: skip
    result = run(args, tmp_path)
    assert result.exit_code == 0, result.output
    manifest = modelpkg.read_manifest(out)
    build = manifest.build_for("cpu")
    assert (manifest.version, build.file, build.input["long_side"]) == ("1.1", "movenet.tflite", 256)
    assert build.sha256 == modelpkg.describe_file(model)[0]
    bad = run([*args[:-4], "--build", "cpu:litert:x:/nonexistent.tflite", "--out", str(out)], tmp_path)
    assert bad.exit_code == 1 and "no such model file" in bad.output


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_token_create_bundle_names_the_server_a_server_toml_configures(tmp_path):
    """`fleet token create --bundle` writes the URL the server started from the same server.toml listens at (not
    'localhost' and not the default port), and a device enrolls with that bundle as it is."""
    server_data = tmp_path / "server"
    server_data.mkdir()
    (server_data / "server.toml").write_text(f"port = {_free_port()}\n")
    server = BackgroundServer(load_server_config(server_data, None, {})).start()
    try:
        bundle = tmp_path / "bundle.json"
        made = CliRunner().invoke(
            cli,
            ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-08", "--bundle", str(bundle)],
        )
        assert made.exit_code == 0, made.output
        written = json.loads(bundle.read_text())
        assert written["server_url"] == server.url and server.url.startswith("https://127.0.0.1:")
        assert not server.url.endswith(":8765")
        assert "which only a device on this machine reaches" in made.output  # loopback: said, on stderr
        enrolled = run(["device", "enroll", "--bundle", str(bundle), "--name", "cam-4a08"], tmp_path)
        assert enrolled.exit_code == 0 and f"at {server.url}" in enrolled.output, enrolled.output
    finally:
        server.stop()


@pytest.mark.parametrize(
    "toml, url",
    [
        ('port = 9443\npublic_url = "https://fleet.example.org/"', "https://fleet.example.org"),
        ('host = "0.0.0.0"\nport = 8443\ntls_hostnames = ["localhost", "fleet.example.org"]',
         "https://fleet.example.org:8443"),
        ('host = "0.0.0.0"\nport = 8443', "https://127.0.0.1:8443"),
        ('host = "10.0.0.5"\nport = 8443\ntls_hostnames = ["10.0.0.5", "fleet.example.org"]', "https://10.0.0.5:8443"),
        ('host = "10.0.0.5"\nport = 8443\ntls_hostnames = ["fleet.example.org"]', "https://fleet.example.org:8443"),
        ('host = "::1"\nport = 8443\ntls_hostnames = ["::1"]', "https://[::1]:8443"),
        ('host = "192.168.1.4"\nport = 8080\ninsecure_http = true', "http://192.168.1.4:8080"),
    ],
)  # fmt: skip
def test_token_create_bundle_url_follows_the_configuration(tmp_path, toml, url):
    from fleet import pki
    from fleet.enrollment.bundle_url import bundle_server_url

    server_data = tmp_path / "server"
    server_data.mkdir()
    (server_data / "server.toml").write_text(toml + "\n")
    pki.ensure_ca(server_data / "fleet-keys", now=datetime.now(UTC))
    bundle = tmp_path / "bundle.json"
    made = CliRunner().invoke(
        cli, ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-09", "--bundle", str(bundle)]
    )
    assert made.exit_code == 0, made.output
    assert json.loads(bundle.read_text())["server_url"] == url
    assert "warning: the server certificate" not in made.output
    assert bundle_server_url(load_server_config(server_data, None, {})) == url


def test_token_create_bundle_refuses_a_port_picked_at_start(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "server.toml").write_text("port = 0\n")
    made = run(["fleet", "token", "create", "--room", "4A-10", "--bundle", str(tmp_path / "b.json")], tmp_path)
    assert made.exit_code == 1 and "pass --server" in made.output
    assert not (tmp_path / "b.json").exists()
    assert "wst." not in made.output  # refused before a token was made


def _serve(data_dir, *args):
    """`wardsight fleet serve` in a subprocess on ``data_dir``; returns it and the URL it announced."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
    argv = [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir), "fleet", "serve", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stdout.readline()
    if not first.startswith("fleet server on "):
        proc.kill()
        raise AssertionError(f"{first}{proc.communicate(timeout=30)}")
    return proc, first.split()[3]


def test_token_create_bundle_names_the_port_the_running_server_listens_on(tmp_path):
    """`fleet serve --port N` (not the configured port): the bundle names N, and a device enrolls with it."""
    import signal

    server_data = tmp_path / "server"
    port = _free_port()
    assert port != ServerConfig().port  # the configuration (none here) says 8765
    proc, url = _serve(server_data, "--port", str(port))
    try:
        assert url == f"https://127.0.0.1:{port}"
        listening = json.loads((server_data / "server.listening.json").read_text())
        assert listening["url"] == url and listening["pid"] == proc.pid
        assert (server_data / "server.listening.json").stat().st_mode & 0o777 == 0o644
        bundle = tmp_path / "bundle.json"
        made = CliRunner().invoke(
            cli,
            ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-11", "--bundle", str(bundle)],
        )
        assert made.exit_code == 0, made.output
        assert json.loads(bundle.read_text())["server_url"] == url
        enrolled = run(["device", "enroll", "--bundle", str(bundle), "--name", "cam-4a11"], tmp_path)
        assert enrolled.exit_code == 0 and f"at {url}" in enrolled.output, enrolled.output
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert not (server_data / "server.listening.json").exists()  # removed at a clean stop


def test_token_create_bundle_names_a_background_server_on_a_free_port(tmp_path):
    """The demo's server (a BackgroundServer on the port --port 0 picked) is named too, and forgotten once stopped."""
    server_data = tmp_path / "server"
    server = BackgroundServer(ServerConfig(port=0, database=server_data / "fleet.db")).start()
    args = ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-12", "--bundle"]
    try:
        made = CliRunner().invoke(cli, [*args, str(tmp_path / "b1.json")])
        assert made.exit_code == 0, made.output
        assert json.loads((tmp_path / "b1.json").read_text())["server_url"] == server.url
    finally:
        server.stop()
    assert not (server_data / "server.listening.json").exists()
    made = CliRunner().invoke(cli, [*args, str(tmp_path / "b2.json")])
    assert json.loads((tmp_path / "b2.json").read_text())["server_url"] == "https://127.0.0.1:8765"  # configured


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


@pytest.mark.parametrize("stale", ["dead pid", "other database", "garbage"])
def test_token_create_ignores_a_stale_listening_file(tmp_path, stale):
    """A server killed without a clean stop leaves its file behind: a dead process's port is not written (nor one
    for another database's server, nor a damaged file); the configured address is."""
    from fleet import pki

    server_data = tmp_path / "server"
    pki.ensure_ca(server_data / "fleet-keys", now=datetime.now(UTC))
    listening = {"url": "https://127.0.0.1:40001", "host": "127.0.0.1", "port": 40001, "insecure_http": False,
                 "pid": _dead_pid(), "database": str((server_data / "fleet.db").resolve())}  # fmt: skip
    if stale == "other database":
        import os

        listening |= {"pid": os.getpid(), "database": str(tmp_path / "elsewhere" / "fleet.db")}
    text = "{not json" if stale == "garbage" else json.dumps(listening)
    (server_data / "server.listening.json").write_text(text)
    bundle = tmp_path / "bundle.json"
    made = CliRunner().invoke(
        cli, ["--data-dir", str(server_data), "fleet", "token", "create", "--room", "4A-13", "--bundle", str(bundle)]
    )
    assert made.exit_code == 0, made.output
    assert json.loads(bundle.read_text())["server_url"] == "https://127.0.0.1:8765"


def test_the_listening_file_is_found_live_with_the_current_pid(tmp_path):
    """The counterpart of the stale test: the same file with a live process is used (the test above can fail)."""
    import os

    from fleet.enrollment.bundle_url import bundle_server_url
    from fleet.server import running_server

    config = load_server_config(tmp_path, None, {})
    every = "0.0.0.0"  # noqa: S104 - what a server bound to every address writes
    listening = {"url": "https://127.0.0.1:40001", "host": every, "port": 40001, "insecure_http": False,
                 "pid": os.getpid(), "database": str((tmp_path / "fleet.db").resolve())}  # fmt: skip
    (tmp_path / "server.listening.json").write_text(json.dumps(listening))
    running = running_server(config)
    assert running is not None and running.port == 40001
    assert bundle_server_url(config, running) == "https://127.0.0.1:40001"  # bound to every address: loopback
    config.public_url = "https://fleet.example.org"
    assert bundle_server_url(config, running) == "https://fleet.example.org"  # public_url first
