"""Build and boot the amd64 twin and check it: one PASS/FAIL line per check, a final line, exit 1 on any failure.

Usage (images/test-twin.sh runs it as root): run.py [--config images/config/pi4.yaml] [--layer NAME] [--keep]

Boot 1 enrolls from the bundle on the FAT disk and runs the in-guest checks (twin-check: boot, read-only root,
agent, firewall, watchdog) while the host answers its questions (events on the server, the inbound connection);
then the host reads the FAT back with mtools. Boot 2, same disks, checks the identity is kept and nothing enrolls
again. The serial console of each boot, the guest's journal and the server's log are copied to
<cache>/last-run/ whatever happens; a failed run's disks stay in <cache>/run-*/ until the next run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import assemble
import guest
from host import FleetServer, Listener, NtpServer, fat_bundle, fat_listing, make_fat
from report import Report

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("WARDSIGHT_TWIN_CACHE", Path.home() / ".cache" / "wardsight-twin"))
DEVICE_TOML = """\
# amd64 twin: the demo clip (models/demo-footage/bikes.mp4 here), looped, instead of a camera.
[source]
kind = "file"
loop = true
"""


def data_files(work: Path) -> Path:
    """What the twin puts into /var/lib/wardsight before the first boot: device.toml and the fetched models."""
    fetched = CACHE / "fetched"
    wardsight = REPO / ".venv" / "bin" / "wardsight"
    start = assemble.step("fetching the pose model and the demo clip on the host (wardsight models fetch)")
    guest.run_checked([str(wardsight), "--data-dir", str(fetched), "models", "fetch"])
    print(f"twin: models ready in {assemble.took(start)}")
    files = work / "data-files"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    shutil.copytree(fetched / "models", files / "models")
    (files / "device.toml").write_text(DEVICE_TOML)
    return files


def check_fat(report: Report, fat: Path, token: str) -> None:
    text = fat_bundle(fat)
    report.check(
        "token-gone-from-fat", text is None or token not in text,
        f"mtype ::wardsight/enrollment.json: {'no such file' if text is None else 'still there'};"
        f" FAT holds: {fat_listing(fat)}",
    )
    secret = token.rsplit(".", 1)[-1].encode()
    left = secret in fat.read_bytes()
    report.check(
        "token-bytes-gone-from-fat", not left,
        "the token's secret is still in the FAT image's bytes (the file was deleted, its clusters not overwritten)"
        if left else "the token's secret is nowhere in the FAT image's bytes (deleted clusters included)",
    )


def check_enrolled(report: Report, server: FleetServer, device_id: str) -> None:
    devices = server.devices()
    mine = [d for d in devices if d.get("id") == device_id]
    report.check(
        "enrolled", bool(device_id) and len(mine) == 1 and mine[0].get("status") == "active",
        f"the guest's identity {device_id or '(none)'}; the server lists "
        + (", ".join(f"{d.get('id')} ({d.get('room')}, {d.get('status')})" for d in devices) or "no device"),
    )


def second_boot(report: Report, server: FleetServer, first: guest.BootResult, second: guest.BootResult) -> None:
    devices = server.devices()
    report.check(
        "second-boot-same-identity",
        bool(first.device_id) and first.device_id == second.device_id and len(devices) == 1,
        f"boot 1 {first.device_id or '-'}, boot 2 {second.device_id or '-'}; the server has {len(devices)} device(s)",
    )


def boots(args: argparse.Namespace, work: Path, report: Report) -> None:
    deb = assemble.ensure_deb(REPO, CACHE)
    tar = assemble.ensure_rootfs(REPO, CACHE, Path(args.config).resolve(), args.layer, deb)
    disks = assemble.make_disks(tar, work, data_files(work))
    with contextlib.ExitStack() as stack:
        stack.callback(guest.save_journal, disks.persistent, work)
        ntp = NtpServer()
        stack.callback(ntp.stop)
        probe = Listener()
        stack.callback(probe.stop)
        server = FleetServer(REPO / ".venv" / "bin" / "wardsight", work / "fleet")
        stack.callback(server.stop)
        token = server.bundle(work / "enrollment.json")
        make_fat(work / "fat.img", work / "enrollment.json")
        root_before = guest.digest(disks.root)
        context = guest.Context(disks, work / "fat.img", server, probe, report)
        first = guest.boot(context, "boot1", work)
        check_enrolled(report, server, first.device_id)
        check_fat(report, work / "fat.img", token)
        second = guest.boot(context, "boot2", work)
        second_boot(report, server, first, second)
        report.check("root-disk-unchanged", guest.digest(disks.root) == root_before,
                     "the root image's sha256 after two boots equals the built one")
        print(f"twin: NTP requests answered: {ntp.answered}")


def keep_logs(work: Path) -> None:
    """The serial consoles, the guest's journal and the server's log of the last run, whatever happened."""
    last = CACHE / "last-run"
    shutil.rmtree(last, ignore_errors=True)
    last.mkdir()
    for name in ("console-boot1.log", "console-boot2.log", "journal.txt", "fleet/serve.log"):
        if (work / name).is_file():
            shutil.copy(work / name, last / Path(name).name)
    print(f"twin: serial console logs and the guest's journal: {last}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "images" / "config" / "pi4.yaml"), help="Pi config to follow")
    parser.add_argument("--layer", action="append", default=[], help="an extra recipe layer (e.g. wardsight-ssh)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory even when all checks pass")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("twin: run as root (mmdebstrap's root mode, and the disk images keep the rootfs's owners)")
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    for old in CACHE.glob("run-*"):  # a failed run's disks are kept until the next run
        shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=CACHE))
    report = Report()
    start = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop QEMU and the server on the way out
    try:
        boots(args, work, report)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        report.check("twin-run", False, f"{type(exc).__name__}: {exc}")
    failed = report.finish(time.monotonic() - start)
    keep_logs(work)
    if failed or args.keep:
        print(f"twin: work directory kept: {work} (disk images, console logs, journal)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
