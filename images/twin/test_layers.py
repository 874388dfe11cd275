"""How the twin reads the recipe's layers (images/twin/layers.py). Fast; run with
``.venv/bin/python -m pytest images/twin/test_layers.py`` (the slow boot test is images/test-twin.sh)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from layers import LayerError, config_env, mmdebstrap_args, read_layer, select

REPO = Path(__file__).resolve().parents[2]
TWIN = REPO / "images" / "twin" / "layer" / "wardsight-twin.yaml"


def layer(top: Path, name: str, body: str, requires: str = "") -> Path:
    meta = f"# METABEGIN\n# X-Env-Layer-Name: {name}\n"
    if requires:
        meta += f"# X-Env-Layer-Requires: {requires}\n"
    path = top / f"{name}.yaml"
    path.write_text(meta + "# METAEND\n---\n" + body)
    return path


def hook(top: Path, name: str, phase_name: str) -> Path:
    path = top / f"{name}.d" / "hooks" / phase_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_pi_configs_give_the_agent_layers_in_order_then_the_twin() -> None:
    layers, notes = select(REPO / "images" / "config" / "pi5.yaml", REPO / "images" / "layer", TWIN, [])
    names = [x.name for x in layers]
    assert names[-1] == "wardsight-twin"
    assert names.index("wardsight-base") < names.index("wardsight-agent")
    assert "wardsight-hailo" not in names
    assert any(n.startswith("wardsight-hailo: skipped") for n in notes)
    assert names.index("wardsight-agent") < names.index("wardsight-rauc")
    assert "wardsight-debian-snapshot" not in names  # where Debian comes from: the twin's own mirror
    assert any(n.startswith("wardsight-debian-snapshot: distribution layer, skipped") for n in notes)


def test_the_hooks_get_the_configs_settings_for_the_layers_it_builds() -> None:
    config = REPO / "images" / "config" / "pi4.yaml"
    layers, _ = select(config, REPO / "images" / "layer", TWIN, [])
    env = config_env(config, layers)
    assert env["IGconf_rauc_board"] == "pi4"
    assert env["IGconf_wardsight_system_version"].count(".") == 2  # e.g. 2026.12.0
    assert "IGconf_snapshot_debian" not in env  # the snapshot layer is not built here
    assert not any(k.startswith(("IGconf_device_", "IGconf_image_")) for k in env)  # upstream layers' sections


def test_overlay_before_hooks_and_cleanup_last(tmp_path: Path) -> None:
    layer(tmp_path, "a", "mmdebstrap:\n  packages: [x, y]\n")
    (tmp_path / "a.d" / "customize.overlay").mkdir(parents=True)
    a_cleanup = hook(tmp_path, "a", "cleanup90-sbom")
    a_custom = hook(tmp_path, "a", "customize10-one")
    layer(tmp_path, "b", "mmdebstrap:\n  packages: [y, z]\n  customize-hooks: ['echo inline']\n", requires="a")
    b_custom = hook(tmp_path, "b", "customize10-two")
    config = tmp_path / "config.yaml"
    config.write_text("layer:\n  second: b\n  first: a\n")
    layers, _ = select(config, tmp_path, None, [])
    assert [x.name for x in layers] == ["a", "b"]  # Requires orders them, not the config
    args = mmdebstrap_args(layers)
    assert args[0] == "--include=x,y,z"
    hooks = [a.removeprefix("--customize-hook=") for a in args[1:]]
    assert hooks == [
        f"sync-in {tmp_path / 'a.d' / 'customize.overlay'} /", str(a_custom), str(b_custom), "echo inline",
        str(a_cleanup),
    ]


def test_bad_layers_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = layer(tmp_path, "a", "mmdebstrap: {}\n")
    path.rename(tmp_path / "b.yaml")
    with pytest.raises(LayerError, match="X-Env-Layer-Name is 'a'"):
        read_layer(tmp_path / "b.yaml")
    layer(tmp_path, "c", "mmdebstrap: {}\n", requires="d")
    layer(tmp_path, "d", "mmdebstrap: {}\n", requires="c")
    config = tmp_path / "config.yaml"
    config.write_text("layer:\n  one: c\n  two: d\n")
    with pytest.raises(LayerError, match="circle"):
        select(config, tmp_path, None, [])
    hook(tmp_path, "c", "customize10-x").chmod(0o644)
    with pytest.raises(LayerError, match="executable"):
        mmdebstrap_args([read_layer(tmp_path / "c.yaml")])
