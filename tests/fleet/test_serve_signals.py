"""``wardsight fleet serve`` ends cleanly on Ctrl-C and on ``systemctl stop`` (SIGTERM), also when whoever started it
left SIGINT ignored (a child inherits that, and Python then never raises KeyboardInterrupt: the server could only be
killed, which is how a test saw it)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(("sent", "inherited_sigint"), [(signal.SIGINT, signal.SIG_IGN), (signal.SIGTERM, None)])
def test_the_server_stops_on_ctrl_c_or_sigterm(tmp_path: Path, sent: signal.Signals, inherited_sigint) -> None:
    def child_setup() -> None:
        if inherited_sigint is not None:
            signal.signal(signal.SIGINT, inherited_sigint)

    argv = [sys.executable, "-m", "wardsight", "--data-dir", str(tmp_path), "fleet", "serve", "--port", "0",
            "--insecure-http"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            preexec_fn=child_setup)  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("fleet server on ")
        proc.send_signal(sent)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
