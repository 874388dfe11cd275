"""A model update through ``wardsight demo`` as a new user does it: start the demo, run the three commands it
prints (package, publish, rollout), and watch the rollout complete in the console, signed in with the demo's
own viewer account. The demo's agent switches models by asking to be restarted; the demo starts it again
in-process, as systemd does on a device."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

from playwright.sync_api import expect


def _read_until(proc: subprocess.Popen[str], prefix: str, lines: list[str], timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip().startswith(prefix):
            return line.strip()
    raise AssertionError(f"the demo never printed {prefix!r}:\n{''.join(lines)}")


def test_a_rollout_started_from_the_demos_commands_completes_in_the_console(browser, data_dir_with_models, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDSIGHT_")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "wardsight", "--data-dir", str(data_dir_with_models), "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    lines: list[str] = []
    try:
        url = _read_until(demo, "console: ", lines).split()[1]
        login = _read_until(demo, "sign in as ", lines).split()
        user, password = login[3], login[5]
        exports = _read_until(demo, "export ", lines)
        commands = [_read_until(demo, f"wardsight ota {verb}", lines) for verb in ("package", "publish", "rollout")]
        for assignment in shlex.split(exports)[1:]:
            key, _, value = assignment.partition("=")
            env[key] = value
        for command in commands:  # exactly as printed, from the user's working directory
            argv = shlex.split(command)
            assert argv[0] == "wardsight"
            done = subprocess.run(
                [sys.executable, "-m", "wardsight", *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, (command, done.stdout, done.stderr)

        context = browser.new_context(ignore_https_errors=True, base_url=url)
        page = context.new_page()
        page.set_default_timeout(15000)
        page.goto("/#/models")
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        rollout = page.locator("article.rollout").first
        expect(rollout).to_contain_text("movenet-multipose 1.1")
        expect(rollout).to_have_attribute("data-status", "completed", timeout=120000)
        devices = rollout.get_by_role("table", name=re.compile("^Devices of rollout"))
        expect(devices).to_contain_text("healthy on 1.1")
        context.close()
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
