"""The rpi-image-gen configs and layers: YAML that parses, the X-Env metadata rpi-image-gen's parser accepts,
hooks that the layer runner (and mmdebstrap's --hook-directory) will run, vendor packages pinned."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.images.conftest import IMAGES

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install pyyaml)")

LAYERS = sorted((IMAGES / "layer").glob("*.yaml"))
CONFIGS = sorted((IMAGES / "config").glob("*.yaml"))
HOOKS = sorted(p for layer in LAYERS for p in (layer.with_suffix(".d") / "hooks").glob("*"))
# rpi-image-gen's site/metadata_parser.py accepts these layer fields (and X-Env-Var-<name>[-attribute]).
LAYER_FIELDS = {
    "Name",
    "Desc",
    "Version",
    "Requires",
    "Conflicts",
    "Category",
    "Type",
    "Generator",
    "Provides",
    "RequiresProvider",
    "AfterProvider",
    "Sets",
}
VAR_ATTRIBUTES = {"Desc", "Required", "Valid", "Set", "Triggers", "Conflicts", "Anchor"}
PHASES = ("setup", "extract", "essential", "customize", "cleanup")
VENDOR_LAYERS = ("wardsight-hailo", "wardsight-coral", "wardsight-imx500")


def metadata(path: Path) -> dict[str, str]:
    """The DEB822 fields between '# METABEGIN' and '# METAEND', as rpi-image-gen reads them."""
    lines = path.read_text().splitlines()
    assert "# METABEGIN" in lines and "# METAEND" in lines, f"{path.name}: no METABEGIN/METAEND block"
    block = lines[lines.index("# METABEGIN") + 1 : lines.index("# METAEND")]
    fields: dict[str, str] = {}
    last = None
    for line in block:
        assert line.startswith("#"), f"{path.name}: '{line}' inside the metadata is not a comment"
        text = line[2:] if line.startswith("# ") else line[1:]
        if not text.strip():
            continue
        if text.startswith((" ", "\t")):
            assert last, f"{path.name}: continuation line '{text}' without a field"
            fields[last] += "\n" + text.strip()
            continue
        name, sep, value = text.partition(":")
        assert sep and re.fullmatch(r"X-Env-[A-Za-z0-9_-]+", name), f"{path.name}: '{text}' is not an X-Env field"
        fields[name] = value.strip()
        last = name
    return fields


def check_field(path: Path, name: str, fields: dict[str, str]) -> None:
    if name.startswith("X-Env-Layer-"):
        assert name.removeprefix("X-Env-Layer-") in LAYER_FIELDS, f"{path.name}: unsupported field {name}"
    elif name.startswith("X-Env-Var-"):
        assert "X-Env-VarPrefix" in fields, f"{path.name}: {name} without X-Env-VarPrefix"
        var, _, attribute = name.removeprefix("X-Env-Var-").partition("-")
        assert f"X-Env-Var-{var}" in fields, f"{path.name}: {name} for an undeclared variable"
        assert not attribute or attribute in VAR_ATTRIBUTES, f"{path.name}: unsupported field {name}"
    else:
        assert name in {"X-Env-VarPrefix", "X-Env-VarRequires", "X-Env-VarRequires-Valid"}, name


@pytest.mark.parametrize("path", LAYERS, ids=lambda p: p.name)
def test_each_layer_has_valid_metadata_and_a_yaml_body(path: Path) -> None:
    fields = metadata(path)
    assert fields.get("X-Env-Layer-Name") == path.stem
    assert fields.get("X-Env-Layer-Desc"), f"{path.name}: no X-Env-Layer-Desc"
    assert re.fullmatch(r"\d+\.\d+\.\d+", fields.get("X-Env-Layer-Version", "")), path.name
    for name in fields:
        check_field(path, name, fields)
    body = yaml.safe_load(path.read_text())
    packages = body["mmdebstrap"]["packages"]
    assert packages and all(isinstance(p, str) and " " not in p for p in packages)


def test_metadata_check_rejects_what_rpi_image_gen_rejects(tmp_path: Path) -> None:
    """The field check above can fail: a free comment in the block, or the documented-but-unparsed
    X-Env-Layer-Description (the parser's field is X-Env-Layer-Desc)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("# METABEGIN\n# X-Env-Layer-Name: bad\n# the default comes from somewhere\n# METAEND\n---\n")
    with pytest.raises(AssertionError, match="not an X-Env field"):
        metadata(bad)
    bad.write_text("# METABEGIN\n# X-Env-Layer-Name: bad\n# X-Env-Layer-Description: x\n# METAEND\n---\n")
    fields = metadata(bad)
    with pytest.raises(AssertionError, match="unsupported field"):
        check_field(bad, "X-Env-Layer-Description", fields)


def test_layers_require_the_layers_below_them() -> None:
    requires = {p.stem: metadata(p).get("X-Env-Layer-Requires", "") for p in LAYERS}
    assert requires["wardsight-base"] == ""
    assert requires["wardsight-agent"] == "wardsight-base"
    for name in (*VENDOR_LAYERS, "wardsight-ssh", "wardsight-rauc"):
        assert requires[name] == "wardsight-agent"
    assert requires["wardsight-debian-snapshot"] == "locale-base"  # as rpi-image-gen's debian-bookworm-arm64-multi


@pytest.mark.parametrize("name", VENDOR_LAYERS)
def test_vendor_packages_are_pinned_to_versions_the_layer_declares(name: str) -> None:
    path = IMAGES / "layer" / f"{name}.yaml"
    fields = metadata(path)
    prefix = fields["X-Env-VarPrefix"]
    vendor = [p for p in yaml.safe_load(path.read_text())["mmdebstrap"]["packages"] if p not in {"dkms"}]
    vendor = [p for p in vendor if not p.startswith("linux-headers-")]
    assert vendor
    for package in vendor:
        name_, sep, version = package.partition("=")
        assert sep, f"{name}: {package} is not pinned"
        var = re.fullmatch(r"\$\{IGconf_" + prefix + r"_(\w+)\}", version)
        assert var and f"X-Env-Var-{var.group(1)}" in fields, f"{name}: {package} names no declared variable"


@pytest.mark.parametrize("path", HOOKS, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_hooks_are_plain_executable_shell_the_runner_will_pick(path: Path) -> None:
    assert os.access(path, os.X_OK), f"{path} is not executable: bin/runner skips it"
    assert re.fullmatch(r"[a-zA-Z0-9-]+", path.name) and path.name.startswith(PHASES), path.name
    assert path.read_text().startswith("#!/bin/sh\n")
    done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_overlays_only_use_phases_and_keep_no_secrets() -> None:
    for layer in LAYERS:
        dotd = layer.with_suffix(".d")
        if not dotd.is_dir():
            continue
        for child in dotd.iterdir():
            assert child.name == "hooks" or child.name == "customize.overlay", child
        for path in dotd.rglob("*"):
            assert not re.search(r"ssh_host_|authorized_keys$|\.pem$|enrollment\.json$", path.name), path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_use_image_rota_and_existing_wardsight_layers(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert config["image"]["layer"] == "image-rota"
    assert config["device"]["layer"] == {"pi5.yaml": "rpi5", "pi4.yaml": "rpi4"}[path.name]
    names = {p.stem for p in LAYERS}
    used = {v for v in config["layer"].values() if str(v).startswith("wardsight-")}
    assert {"wardsight-base", "wardsight-agent"} <= used <= names
    assert "openssh-server" not in config["layer"].values()  # no SSH unless wardsight-ssh is chosen
    assert config["wardsight"]["deb"].endswith("_arm64.deb")
    # System updates: RAUC for this board, the image's version, Debian pinned to one snapshot.
    assert config["layer"]["rauc"] == "wardsight-rauc"
    assert config["rauc"]["board"] == {"pi5.yaml": "pi5", "pi4.yaml": "pi4"}[path.name]
    assert config["rauc"]["keyring"].endswith(".pem")
    assert re.fullmatch(r"\d+(\.\d+)+", str(config["wardsight"]["system_version"]))
    assert config["layer"]["base"] == "wardsight-debian-snapshot"
    assert re.fullmatch(r"\d{8}T\d{6}Z", config["snapshot"]["debian"])


def test_the_snapshot_layer_takes_every_bookworm_suite_from_one_recorded_time() -> None:
    path = IMAGES / "layer/wardsight-debian-snapshot.yaml"
    fields = metadata(path)
    assert fields["X-Env-Layer-Provides"] == "debian-base" and fields["X-Env-Layer-Category"] == "distribution"
    assert fields["X-Env-Var-url"] == "https://snapshot.debian.org"
    mirrors = yaml.safe_load(path.read_text())["mmdebstrap"]["mirrors"]
    suites = []
    for line in mirrors:
        words = line.split()
        assert words[:2] == ["deb", "[check-valid-until=no]"], line  # snapshot Release files are past Valid-Until
        assert re.fullmatch(r"\$\{IGconf_snapshot_url\}/archive/debian(-security)?/\$\{IGconf_snapshot_debian\}/",
                            words[2]), line  # fmt: skip
        suites.append(words[3])
    assert suites == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert "deb.debian.org" not in path.read_text()
