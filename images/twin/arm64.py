"""The arm64 check: the recipe's agent layers build an arm64 rootfs under qemu-user, and the agent's Python stack
(``ai_edge_litert``, ``cv2``, ``numpy``) imports there and runs one inference of the pose model.

Run by images/test-arm64-rootfs.sh inside userns.py (a private user namespace where qemu-aarch64 is registered).
Steps: the aarch64 wheels for CPython 3.11 (pip download, cached), the arm64 .deb built by ``make deb`` inside an
arm64 Debian 12 builder made with mmdebstrap (images/README.md, "The .deb for arm64"), then the layers the Pi
config names that live here (wardsight-base, wardsight-agent, wardsight-rauc: its system.conf rendered by the arm64
agent under qemu-user) built with mmdebstrap for arm64, with the import and inference checks, ``rauc --version``
and the system-release file run or read in that rootfs as its last hooks. One PASS/FAIL line per step, a final
line, exit 1 on failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from buildenv import hook_env
from layers import mmdebstrap_args, select, tree_digest

REPO = Path(__file__).resolve().parents[2]
BASE = Path(os.environ.get("WARDSIGHT_TWIN_CACHE", Path.home() / ".cache" / "wardsight-twin"))
CACHE = BASE / "arm64"
MIRROR = os.environ.get("WARDSIGHT_TWIN_MIRROR", "http://deb.debian.org/debian")
PIP = [str(REPO / ".venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
PLATFORM = ["--only-binary=:all:", "--platform", "manylinux_2_28_aarch64", "--platform", "manylinux2014_aarch64",
            "--platform", "manylinux_2_17_aarch64", "--python-version", "3.11", "--implementation", "cp",
            "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
IMPORTS = (
    "import ai_edge_litert, cv2, numpy; print('imports ok: numpy', numpy.__version__, 'cv2', cv2.__version__)"
)
# One inference of the pose model on a blank frame, in the arm64 rootfs: LiteRT/XNNPACK really run on aarch64.
INFERENCE = """
import sys, numpy
from ai_edge_litert.interpreter import Interpreter
net = Interpreter(model_path=sys.argv[1], num_threads=2)
net.resize_tensor_input(net.get_input_details()[0]["index"], [1, 256, 256, 3])
net.allocate_tensors()
net.set_tensor(net.get_input_details()[0]["index"], numpy.zeros((1, 256, 256, 3), numpy.uint8))
net.invoke()
print("inference ok: output", net.get_tensor(net.get_output_details()[0]["index"]).shape)
"""
DEB_SOURCES = ("wardsight", "firmware", "accelerators", "fleet", "provisioning", "signing", "wardsight_cli",
               "pyproject.toml", "README.md", "Makefile", "images/deb", "images/systemd", "images/polkit",
               "images/nftables", "images/README.md")


def log(line: str) -> None:
    print(line, flush=True)


def run(command: list[str], logfile: Path) -> None:
    with logfile.open("a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = logfile.read_text().splitlines()[-25:]
        raise RuntimeError(f"status {done.returncode}: {command[0]} (see {logfile}):\n" + "\n".join(tail))


def wheelhouse(work: Path) -> Path:
    """The agent's wheel and every dependency for aarch64 / CPython 3.11, plus setuptools to build the wheel."""
    wheels = work / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    logfile = work / "wheels.log"
    agent_dir = work / "agent-wheel"
    shutil.rmtree(agent_dir, ignore_errors=True)
    for old in wheels.glob("wardsight-*.whl"):
        old.unlink()
    run([*PIP, "wheel", "--no-deps", "-w", str(agent_dir), str(REPO)], logfile)
    agent = sorted(agent_dir.glob("wardsight-*.whl"))[0]
    run([*PIP, "download", *PLATFORM, "-d", str(wheels), str(agent)], logfile)
    shutil.copy(agent, wheels / agent.name)
    run([*PIP, "download", "--only-binary=:all:", "-d", str(wheels), "setuptools>=77"], logfile)
    return wheels


def source_tar(work: Path) -> Path:
    """The tree as git sees it (tracked and untracked-but-not-ignored files): no .venv, no build/."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [f for f in listed if f and (REPO / f).is_file()]
    tar = work / "src.tar"
    subprocess.run(["tar", "-C", str(REPO), "-cf", str(tar), "--null", "-T", "-"],
                   input="\0".join(files).encode(), check=True)
    return tar


def build_deb(work: Path, wheels: Path) -> Path:
    key = tree_digest([REPO / p for p in DEB_SOURCES if (REPO / p).exists()])[:16]
    out = work / "deb" / key
    found = sorted(out.glob("wardsight_*_arm64.deb"))
    if found:
        log(f"arm64: agent package (cached) {found[0]}")
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    src = source_tar(work)
    build = ("cd /src && WHEELHOUSE=/wheels DEB_COMPRESS=gzip"
             " make --no-print-directory deb PYTHON=/usr/bin/python3 DEB_OUT=/out")
    run(["mmdebstrap", "--variant=apt", "--architectures=arm64", "--include=python3,python3-venv,make",
         "--customize-hook=mkdir -p \"$1/src\" \"$1/out\" \"$1/wheels\"",
         f"--customize-hook=tar-in {src} /src",
         f"--customize-hook=sync-in {wheels} /wheels",
         f"--customize-hook=chroot \"$1\" sh -c '{build}'",
         f"--customize-hook=sync-out /out {out}",
         "bookworm", "/dev/null", MIRROR], work / "deb.log")
    return sorted(out.glob("wardsight_*_arm64.deb"))[0]


def build_rootfs(work: Path, deb: Path) -> str:
    (work / "rootfs.log").unlink(missing_ok=True)
    config = REPO / "images" / "config" / "pi4.yaml"
    layers, notes = select(config, REPO / "images" / "layer", None, [])
    for note in notes:
        log(f"arm64: layer {note}")
    log(f"arm64: layers in build order: {', '.join(layer.name for layer in layers)}")
    wardsight = str(REPO / ".venv" / "bin" / "wardsight")
    run([wardsight, "--data-dir", str(BASE / "fetched"), "models", "fetch", "movenet-multipose"], work / "rootfs.log")
    model = sorted((BASE / "fetched" / "models" / "movenet-multipose").glob("*.tflite"))[0]
    script = work / "inference.py"
    script.write_text(INFERENCE)
    python = "chroot \"$1\" /opt/wardsight/venv/bin/python3"
    checks = [
        f"--customize-hook={python} -c \"{IMPORTS}\"",
        f"--customize-hook=copy-in {script} {model} /tmp",
        f"--customize-hook={python} /tmp/{script.name} /tmp/{model.name}",
        f"--customize-hook=rm -f \"$1/tmp/{script.name}\" \"$1/tmp/{model.name}\"",
        "--customize-hook=chroot \"$1\" /usr/bin/wardsight --version",
        "--customize-hook=chroot \"$1\" rauc --version",
        "--customize-hook=cat \"$1/etc/wardsight/system-release\"",
    ]
    command = ["mmdebstrap", "--variant=apt", "--architectures=arm64", *mmdebstrap_args(layers), *checks,
               "bookworm", "/dev/null", MIRROR]
    os.environ.update(hook_env(config, layers, deb, BASE))
    logfile = work / "rootfs.log"
    run(command, logfile)
    said = [line for line in logfile.read_text().splitlines()
            if line.startswith(("imports ok", "inference ok", "wardsight,", "rauc ", "VERSION=", "wardsight-rauc:"))]
    return "; ".join(said)


T = TypeVar("T")


def timed(name: str, action: Callable[[], T], describe: Callable[[T], str]) -> T:
    """Run one step, print its PASS line (or its FAIL line, and raise)."""
    t0 = time.monotonic()
    try:
        result = action()
    except (RuntimeError, IndexError, OSError) as exc:
        log(f"FAIL {name}: {exc} ({time.monotonic() - t0:.0f} s)")
        raise
    log(f"PASS {name}: {describe(result)} ({time.monotonic() - t0:.0f} s)")
    return result


def main() -> int:
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    try:
        wheels = timed("arm64-wheels", lambda: wheelhouse(CACHE), lambda w: f"{len(list(w.glob('*.whl')))} in {w}")
        deb = timed("arm64-deb", lambda: build_deb(CACHE, wheels), str)
        timed("arm64-rootfs-imports", lambda: build_rootfs(CACHE, deb), str)
    except (RuntimeError, IndexError, OSError):
        log(f"arm64: FAILED after {time.monotonic() - start:.0f} s")
        return 1
    log(f"arm64: all 3 steps passed in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
