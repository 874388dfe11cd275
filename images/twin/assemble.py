"""The twin's build steps: the agent's .deb (``make deb``), the rootfs (mmdebstrap with the recipe's layers) and,
per run, the disk images (``mke2fs -d``: no loop mounts, no mounting at all).

The .deb is cached under ``<cache>/deb/<hash of the sources that go into it>/``, the rootfs tarball under
``<cache>/rootfs/<hash of the layers, the twin layer, the .deb sources and these scripts>.tar``, so a rerun with
nothing changed skips both. Runs as root (mmdebstrap's root mode; the images keep the rootfs's owners).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from buildenv import env_digest, hook_env
from layers import layers_digest, mmdebstrap_args, select, tree_digest

SUITE = "bookworm"
MIRROR = os.environ.get("WARDSIGHT_TWIN_MIRROR", "http://deb.debian.org/debian")
HERE = Path(__file__).resolve().parent
# What `make deb` puts into the package (the Python packages, their metadata, the units and helpers).
DEB_SOURCES = (
    "wardsight", "firmware", "accelerators", "fleet", "provisioning", "signing", "wardsight_cli",
    "pyproject.toml", "README.md", "Makefile",
    "images/deb", "images/systemd", "images/polkit", "images/nftables", "images/README.md",
)
KEEP_ROOTFS = 2  # cached tarballs kept (newest first)


def step(what: str) -> float:
    print(f"twin: {what}", flush=True)
    return time.monotonic()


def took(start: float) -> str:
    return f"{time.monotonic() - start:.0f} s"


def deb_key(repo: Path) -> str:
    return tree_digest([repo / p for p in DEB_SOURCES if (repo / p).exists()])[:16]


def ensure_deb(repo: Path, cache: Path) -> Path:
    out = cache / "deb" / deb_key(repo)
    found = sorted(out.glob("wardsight_*_amd64.deb"))
    if found:
        print(f"twin: agent package (cached) {found[0]}")
        return found[0]
    start = step("building the agent package (make deb)")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(repo), "deb", f"DEB_OUT={tmp}", "PYTHON=/usr/bin/python3"],
        check=True, env={**os.environ, "DEB_COMPRESS": "gzip"},
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    deb = sorted(out.glob("wardsight_*_amd64.deb"))[0]
    print(f"twin: built {deb.name} in {took(start)}")
    return deb


def ensure_rootfs(repo: Path, cache: Path, config: Path, extra: list[str], deb: Path) -> Path:
    twin_layer = HERE / "layer" / "wardsight-twin.yaml"
    layers, notes = select(config, repo / "images" / "layer", twin_layer, extra)
    for note in notes:
        print(f"twin: layer {note}")
    print(f"twin: layers in build order: {', '.join(layer.name for layer in layers)}")
    hooks_env = hook_env(config, layers, deb, cache)
    scripts = tree_digest([HERE / "assemble.py", HERE / "layers.py", HERE / "buildenv.py"])
    key = hashlib.sha256(
        "\0".join([layers_digest(layers), deb.parent.name, scripts, SUITE, MIRROR, config.read_text(),
                   env_digest(hooks_env)]).encode()
    ).hexdigest()[:16]
    out = cache / "rootfs" / f"{key}.tar"
    if out.is_file():
        print(f"twin: rootfs (cached) {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **hooks_env}
    tmp = out.with_suffix(".tmp.tar")
    command = ["mmdebstrap", "--variant=apt", "--architectures=amd64", *mmdebstrap_args(layers), SUITE, str(tmp),
               MIRROR]
    log = out.with_suffix(".log")
    start = step(f"building the rootfs with mmdebstrap (log: {log}): " + " ".join(command))
    with log.open("w") as output:
        done = subprocess.run(command, env=env, stdout=output, stderr=subprocess.STDOUT, check=False)
    hooks = [line for line in log.read_text().splitlines() if line.startswith(("wardsight-", "twin:"))]
    print("\n".join(f"    {line}" for line in hooks))
    if done.returncode != 0:
        print("".join(log.read_text().splitlines(keepends=True)[-30:]))
        raise RuntimeError(f"mmdebstrap failed (status {done.returncode}); see {log}")
    tmp.rename(out)
    print(f"twin: rootfs built in {took(start)}: {out}")
    for old in sorted(out.parent.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP_ROOTFS:]:
        old.unlink()
    return out


@dataclass(frozen=True)
class Disks:
    root: Path
    persistent: Path
    kernel: Path
    initrd: Path


def shared_paths(root: Path) -> list[str]:
    """The paths the image shares between A/B slots (rpi-image-gen's slot-shared.d declarations)."""
    found = []
    for conf in sorted((root / "etc/rpi-image-gen/slot-shared.d").glob("*.conf")):
        for line in conf.read_text().splitlines():
            if line.startswith("Path="):
                found.append(line.removeprefix("Path=").strip())
    return found


def owner(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise SystemExit(f"twin: the rootfs has no user {user}")


def group_id(root: Path, group: str) -> int:
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    return 0


def copy_tree(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    else:
        dest.mkdir()


def persistent_tree(root: Path, top: Path, data_files: Path) -> None:
    """What image-rota's persistent partition holds on a fresh card: the slot's /var, the shared paths, /home
    and the journal; plus the twin's device.toml and models in the shared data directory."""
    copy_tree(root / "var", top / "slots/system_a/var")
    for path in shared_paths(root):
        copy_tree(root / path.lstrip("/"), top / "shared" / path.lstrip("/"))
    copy_tree(root / "home", top / "home")
    journal = top / "log/journal"
    journal.mkdir(parents=True)
    os.chown(journal, 0, group_id(root, "systemd-journal"))
    journal.chmod(0o2755)
    data = top / "shared/var/lib/wardsight"
    if not data.is_dir():
        raise SystemExit("twin: /var/lib/wardsight is not a slot-shared path of the image; see twin-requests.md")
    uid, gid = owner(root, "wardsight")
    subprocess.run(["cp", "-a", f"{data_files}/.", str(data)], check=True)
    for item in [data, *data.rglob("*")]:
        os.lchown(item, uid, gid)
        if not item.is_symlink():
            item.chmod(0o700 if item.is_dir() else 0o600)


def mke2fs(source: Path, image: Path, label: str, size_mib: int) -> None:
    image.unlink(missing_ok=True)
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(source), "-L", label, str(image), f"{size_mib}M"],
        check=True,
    )


def make_disks(tar: Path, work: Path, data_files: Path) -> Disks:
    root = work / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    start = step(f"unpacking {tar.name}")
    subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(tar)], check=True)
    kernel = sorted((root / "boot").glob("vmlinuz-*"))[-1]
    initrd = sorted((root / "boot").glob("initrd.img-*"))[-1]
    shutil.copy(kernel, work / "vmlinuz")
    shutil.copy(initrd, work / "initrd.img")
    persistent = work / "persistent"
    shutil.rmtree(persistent, ignore_errors=True)
    persistent_tree(root, persistent, data_files)
    print(f"twin: unpacked in {took(start)}")
    used = int(subprocess.run(["du", "-sm", str(root)], capture_output=True, text=True, check=True).stdout.split()[0])
    start = step("making the ext4 images with mke2fs -d")
    mke2fs(root, work / "root.img", "wardsight-root", used + used // 3 + 256)
    mke2fs(persistent, work / "persistent.img", "PERSISTENT", 2048)
    print(f"twin: mke2fs -d took {took(start)} (root {used} MiB of files)")
    shutil.rmtree(root)
    shutil.rmtree(persistent)
    return Disks(work / "root.img", work / "persistent.img", work / "vmlinuz", work / "initrd.img")
