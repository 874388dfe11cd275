#!/bin/sh
# images/test-arm64-rootfs.sh
#
# The arm64 check: the recipe's agent layers (those images/config/pi4.yaml names that live in images/layer/)
# build an arm64 Debian 12 rootfs under qemu-user, with qemu-aarch64 registered only inside a private user and
# mount namespace (images/twin/userns.py; the host's binfmt_misc is left alone), and the agent's venv imports
# ai_edge_litert, cv2 and numpy there. The arm64 .deb is built first, by `make deb` inside an arm64 builder
# rootfs from aarch64 wheels (images/README.md, "The .deb for arm64"). Slow (images/README.md, "The amd64
# twin"); by hand or in CI, never in the default pytest run. Needs root, Linux 6.7+ (binfmt_misc in a user
# namespace), mmdebstrap, qemu-user-static, PyPI for the wheels. Prints PASS/FAIL per step and a final line;
# exit 1 on failure, 2 when a tool is missing.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

missing=""
for tool in mmdebstrap qemu-aarch64-static git tar; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3  # Debian's, with python3-yaml
"$python" -c 'import yaml' 2>/dev/null || missing="$missing python3-yaml"
if [ -n "$missing" ]; then
    echo "arm64: missing tools:$missing"
    echo "arm64: apt-get install mmdebstrap qemu-user-static git python3-yaml"
    exit 2
fi
if [ ! -x "$repo/.venv/bin/python" ]; then
    echo "arm64: no $repo/.venv (python3 -m venv .venv && .venv/bin/pip install -e .); its pip fetches the wheels"
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "arm64: run as root (the user namespace maps ids 0-65535 to the same ids outside)"
    exit 2
fi

exec "$python" "$here/twin/userns.py" "$python" "$here/twin/arm64.py"
