"""device.toml ``[updates]``: the gates a new model or system must pass (self-test, trial health check)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from firmware.runtime import DeviceRuntime
from wardsight.device_config import DeviceConfig, load_device_config
from wardsight.errors import ConfigError


def test_the_defaults_are_the_pi_gates() -> None:
    gates = DeviceConfig().updates
    assert (gates.health_frames, gates.health_seconds, gates.selftest_timeout, gates.max_invoke_seconds) == (
        30, 120.0, 90.0, 5.0)  # fmt: skip


def test_device_toml_sets_them_and_the_update_loops_get_them(tmp_path: Path) -> None:
    (tmp_path / "device.toml").write_text("[updates]\nhealth_frames = 10\nhealth_seconds = 900\n"
                                          "selftest_timeout = 600\nmax_invoke_seconds = 60\n")  # fmt: skip
    config = load_device_config(tmp_path, None, {})
    settings = DeviceRuntime._ota_settings(SimpleNamespace(config=config), backend="cpu", threads=2)  # type: ignore[arg-type]
    assert (settings.health_frames, settings.health_seconds, settings.selftest_timeout, settings.max_invoke_seconds,
            settings.backend, settings.threads) == (10, 900.0, 600.0, 60.0, "cpu", 2)  # fmt: skip


@pytest.mark.parametrize("line", ["health_frames = 0", "health_seconds = -1", "max_invoke_seconds = 0",
                                  "selftest_timeout = 99999", "health = 3"])  # fmt: skip
def test_nonsense_is_refused_with_the_key(tmp_path: Path, line: str) -> None:
    (tmp_path / "device.toml").write_text(f"[updates]\n{line}\n")
    with pytest.raises(ConfigError, match="updates"):
        load_device_config(tmp_path, None, {})
