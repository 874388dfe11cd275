"""The Pi recipe's layers, read the way rpi-image-gen reads them, turned into one mmdebstrap command for the twin.

A layer is ``images/layer/<name>.yaml``: a ``# METABEGIN`` .. ``# METAEND`` comment block (``X-Env-Layer-Name``,
``X-Env-Layer-Requires``) then an ``mmdebstrap:`` body (``packages``, ``<phase>-hooks``), with hook scripts in
``<name>.d/hooks/<phase>*`` and file overlays in ``<name>.d/<phase>.overlay/``. The twin takes the layers the Pi
config (``images/config/pi4.yaml``) names and that live in this repository, in the order their Requires give, minus
the accelerator layers (they need the Raspberry Pi archive and the chips), then its own layer
(``images/twin/layer/wardsight-twin.yaml``: Debian's kernel and stand-ins for the upstream layers the config names).
Per phase, a layer's overlay is copied in before its hooks run; ``cleanup`` hooks run after every layer's
customize hooks (rpi-image-gen runs them last). A ``distribution`` layer (``X-Env-Layer-Category``: where Debian
comes from, e.g. the snapshot.debian.org pin) is skipped: the twin takes Debian from ``WARDSIGHT_TWIN_MIRROR``.
:func:`config_env` gives the hooks the config's settings as rpi-image-gen does (``IGconf_<section>_<key>``).
Standard library and PyYAML (Debian's python3-yaml).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml  # type: ignore[import-untyped]

PHASES = ("setup", "extract", "essential", "customize", "cleanup")
# Hardware layers: the Raspberry Pi archive's packages (hailo-all, imx500-all, libedgetpu) and the chips.
TWIN_SKIPS = frozenset({"wardsight-hailo", "wardsight-coral", "wardsight-imx500"})
# Body keys the twin does not take from a layer (it builds Debian bookworm amd64 from Debian's mirror).
IGNORED_KEYS = frozenset({"mirrors", "suite", "variant", "architectures", "components", "keyrings"})


class LayerError(Exception):
    """A layer or config the twin cannot use, with the reason."""


@dataclass
class Layer:
    name: str
    path: Path
    requires: list[str] = field(default_factory=list)
    body: dict[str, object] = field(default_factory=dict)
    category: str = ""
    var_prefix: str = ""

    @property
    def extras(self) -> Path:
        return self.path.with_suffix(".d")

    def packages(self) -> list[str]:
        found = self.body.get("packages") or []
        if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
            raise LayerError(f"{self.path}: mmdebstrap.packages must be a list of names")
        return list(found)

    def inline_hooks(self, phase: str) -> list[str]:
        found = self.body.get(f"{phase}-hooks") or []
        if not isinstance(found, list) or not all(isinstance(h, str) for h in found):
            raise LayerError(f"{self.path}: mmdebstrap.{phase}-hooks must be a list of shell commands")
        return list(found)

    def hook_files(self, phase: str) -> list[Path]:
        hooks = self.extras / "hooks"
        if not hooks.is_dir():
            return []
        found = sorted(p for p in hooks.iterdir() if p.is_file() and p.name.startswith(phase))
        for hook in found:
            if not os.access(hook, os.X_OK):
                raise LayerError(f"{hook}: a hook must be executable")
        return found

    def overlay(self, phase: str) -> Path | None:
        path = self.extras / f"{phase}.overlay"
        return path if path.is_dir() else None


def read_layer(path: Path) -> Layer:
    text = path.read_text()
    meta = re.search(r"^# METABEGIN\n(.*?)^# METAEND", text, re.S | re.M)
    if meta is None:
        raise LayerError(f"{path}: no '# METABEGIN' .. '# METAEND' block")
    fields = _meta_fields(meta.group(1))
    name = fields.get("X-Env-Layer-Name", "")
    if name != path.stem:
        raise LayerError(f"{path}: X-Env-Layer-Name is '{name}', the file is named '{path.stem}'")
    requires = [r.strip() for r in fields.get("X-Env-Layer-Requires", "").split(",") if r.strip()]
    doc = yaml.safe_load(text[meta.end():]) or {}
    body = (doc.get("mmdebstrap") or {}) if isinstance(doc, dict) else None
    if not isinstance(body, dict):
        raise LayerError(f"{path}: the body must be a mapping with an 'mmdebstrap:' mapping")
    category, prefix = fields.get("X-Env-Layer-Category", ""), fields.get("X-Env-VarPrefix", "")
    return Layer(name, path, requires, body, category, prefix)


def _meta_fields(block: str) -> dict[str, str]:
    """DEB822-style fields in '# ' comment lines; a line starting '#  ' continues the previous field."""
    fields: dict[str, str] = {}
    last = ""
    for raw in block.splitlines():
        line = raw[1:] if raw.startswith("#") else raw
        if line.startswith("  ") and last:
            fields[last] += " " + line.strip()
        elif ":" in line:
            last, _, value = line.strip().partition(":")
            fields[last] = value.strip()
    return fields


def config_layers(config: Path) -> tuple[list[str], dict[str, str]]:
    """The layer names a Pi config lists (in its order) and its ``wardsight:`` settings."""
    doc = yaml.safe_load(config.read_text()) or {}
    section = doc.get("layer") or {}
    names = list(section.values()) if isinstance(section, dict) else list(section)
    settings = doc.get("wardsight") or {}
    return [str(n) for n in names], {str(k): str(v) for k, v in settings.items()}


def config_env(config: Path, layers: list[Layer]) -> dict[str, str]:
    """``IGconf_<section>_<key>`` for the config's settings in the sections the layers declare (``X-Env-VarPrefix``):
    what rpi-image-gen hands the hooks. Scalars only; values as written (no ``${...}`` expansion)."""
    doc = yaml.safe_load(config.read_text()) or {}
    prefixes = {layer.var_prefix for layer in layers if layer.var_prefix}
    env = {}
    for section in sorted(prefixes):
        settings = doc.get(section) or {}
        if not isinstance(settings, dict):
            raise LayerError(f"{config}: '{section}:' must be a mapping")
        env.update({f"IGconf_{section}_{k}": str(v) for k, v in settings.items() if not isinstance(v, dict | list)})
    return env


def select(
    config: Path, layer_dir: Path, twin_layer: Path | None, extra: list[str]
) -> tuple[list[Layer], list[str]]:
    """The twin's layers in build order, then ``twin_layer``, then the ``extra`` names that are twin variants
    (a layer beside ``twin_layer``, e.g. ``wardsight-twin-ab``); and a note per config layer it does not take."""
    names, _ = config_layers(config)
    notes, chosen, after = [], [], []
    for name in [*names, *extra]:
        if twin_layer is not None and (twin_layer.parent / f"{name}.yaml").is_file():
            after.append(read_layer(twin_layer.parent / f"{name}.yaml"))  # a twin variant: after the twin layer
        elif name in TWIN_SKIPS:
            notes.append(f"{name}: skipped (accelerator hardware and the Raspberry Pi archive)")
        elif (layer_dir / f"{name}.yaml").is_file():
            found = read_layer(layer_dir / f"{name}.yaml")
            if found.category == "distribution":
                notes.append(f"{name}: distribution layer, skipped (the twin takes Debian from its own mirror)")
            else:
                chosen.append(found)
        else:
            stand_in = f"stood in for by {twin_layer.name}" if twin_layer is not None else "not built here"
            notes.append(f"{name}: upstream rpi-image-gen layer, {stand_in} (Debian's base instead)")
    ordered = _order(chosen)
    return [*ordered, read_layer(twin_layer), *after] if twin_layer is not None else ordered, notes


def _order(layers: list[Layer]) -> list[Layer]:
    by_name = {layer.name: layer for layer in layers}
    done: list[Layer] = []

    def visit(layer: Layer, path: tuple[str, ...]) -> None:
        if layer in done:
            return
        if layer.name in path:
            raise LayerError(f"layers require each other in a circle: {' -> '.join((*path, layer.name))}")
        for need in layer.requires:
            if need in by_name:
                visit(by_name[need], (*path, layer.name))
            elif need not in TWIN_SKIPS:
                raise LayerError(f"{layer.name} requires {need}, which the config does not name")
        done.append(layer)

    for layer in layers:
        visit(layer, ())
    return done


def mmdebstrap_args(layers: list[Layer]) -> list[str]:
    """--include and the hook options, phase by phase, layer by layer (overlay first, then hooks)."""
    packages: list[str] = []
    hooks: dict[str, list[str]] = {phase: [] for phase in PHASES}
    for layer in layers:
        for key in set(layer.body) & IGNORED_KEYS:
            print(f"twin: {layer.name}: ignoring mmdebstrap.{key} (the twin builds Debian bookworm amd64)")
        packages += [p for p in layer.packages() if p not in packages]
        for phase in PHASES:
            overlay = layer.overlay(phase)
            if overlay is not None:
                hooks[phase].append(f"sync-in {overlay} /")
            hooks[phase] += [str(h) for h in layer.hook_files(phase)]
            hooks[phase] += layer.inline_hooks(phase)
    args = [f"--include={','.join(packages)}"] if packages else []
    for phase in PHASES:
        option = "customize" if phase == "cleanup" else phase
        args += [f"--{option}-hook={hook}" for hook in hooks[phase]]
    return args


def tree_digest(paths: list[Path]) -> str:
    """sha256 over the names, modes and contents of every file under ``paths``."""
    digest = hashlib.sha256()
    for top in paths:
        files = sorted(p for p in top.rglob("*") if _digestible(p)) if top.is_dir() else [top]
        for path in files:
            digest.update(str(path.relative_to(top.parent)).encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
            elif path.exists():
                digest.update(oct(path.stat().st_mode).encode() + path.read_bytes())
            digest.update(b"\0")
    return digest.hexdigest()


def _digestible(path: Path) -> bool:
    if "__pycache__" in path.parts or path.suffix == ".pyc":
        return False
    return path.is_file() or path.is_symlink()


def layers_digest(layers: list[Layer]) -> str:
    return tree_digest([p for layer in layers for p in (layer.path, layer.extras) if p.exists()])
