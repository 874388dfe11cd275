#!/bin/sh
# images/test-twin.sh [--config images/config/pi4.yaml] [--layer wardsight-ssh] [--keep]
#
# The amd64 twin of the device image, built from the same layers and hooks as the Pi recipe (images/layer/,
# the .deb from `make deb`) with Debian's kernel, booted under qemu-system-x86_64 (TCG) and checked: one
# PASS/FAIL line per check, then "twin: all N checks passed" or "twin: N of M checks FAILED"; exit status 1 on
# any failure, 2 when a tool is missing. Slow (minutes; images/README.md, "The amd64 twin"), so never part of
# the default pytest run. Needs root (mmdebstrap's root mode) and the project's venv (.venv, for the fleet
# server and the bundle). The rootfs is cached under ~/.cache/wardsight-twin (WARDSIGHT_TWIN_CACHE) by a hash
# of the layers, the .deb's sources and these scripts.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

missing=""
for tool in mmdebstrap qemu-system-x86_64 mke2fs debugfs mkfs.vfat mcopy mtype mdir python3 make dpkg-deb; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3  # Debian's, with python3-yaml
"$python" -c 'import yaml' 2>/dev/null || missing="$missing python3-yaml"
if [ -n "$missing" ]; then
    echo "twin: missing tools:$missing"
    echo "twin: apt-get install mmdebstrap qemu-system-x86 e2fsprogs dosfstools mtools python3-yaml make dpkg-dev"
    exit 2
fi
if [ ! -x "$repo/.venv/bin/wardsight" ]; then
    echo "twin: no $repo/.venv/bin/wardsight; python3 -m venv .venv && .venv/bin/pip install -e ."
    exit 2
fi

exec "$python" "$here/twin/run.py" "$@"
