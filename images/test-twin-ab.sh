#!/bin/sh
# images/test-twin-ab.sh [--config images/config/pi4.yaml] [--keep]
#
# System updates in the amd64 twin, A/B (issue 19): the twin's rootfs with the wardsight-twin-ab layer on a GPT
# disk (EFI partition with GRUB, slots system_a / system_b) booted by OVMF under qemu-system-x86_64 (TCG); GRUB and
# RAUC's grub backend stand in for the Pi's tryboot. A fleet server on the host publishes and rolls out RAUC bundles
# with the hospital's own commands: a good one (installed, tried once, marked good), one whose agent fails its
# self-test (boots back, reported), and one with power cuts (QEMU killed) during the install and during the new
# slot's first boot. One PASS/FAIL line per check, then "twin: all N checks passed" or "twin: N of M checks FAILED";
# exit 1 on any failure, 2 when a tool is missing. Slow (about an hour; images/README.md, "System updates in the
# twin"), never part of pytest. Needs root and the project's venv (.venv). Caches as images/test-twin.sh does.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

missing=""
for tool in mmdebstrap qemu-system-x86_64 mke2fs debugfs mkfs.vfat mcopy mtype mmd sfdisk grub-mkstandalone \
            grub-editenv rauc mksquashfs openssl python3 make dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing="$missing ovmf"
[ -d /usr/lib/grub/x86_64-efi ] || missing="$missing grub-efi-amd64-bin"
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3  # Debian's, with python3-yaml
"$python" -c 'import yaml' 2>/dev/null || missing="$missing python3-yaml"
if [ -n "$missing" ]; then
    echo "twin-ab: missing tools:$missing"
    echo "twin-ab: apt-get install mmdebstrap qemu-system-x86 ovmf grub-efi-amd64-bin grub-common e2fsprogs dosfstools" \
        "mtools fdisk rauc squashfs-tools openssl python3-yaml make dpkg-dev"
    exit 2
fi
if [ ! -x "$repo/.venv/bin/wardsight" ]; then
    echo "twin-ab: no $repo/.venv/bin/wardsight; python3 -m venv .venv && .venv/bin/pip install -e ."
    exit 2
fi

exec "$python" "$here/twin/ab.py" "$@"
