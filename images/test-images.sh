#!/bin/sh
# images/test-images.sh [--if-changed]
#
# Both slow image tests, the amd64 twin (images/test-twin.sh) and the arm64 rootfs check
# (images/test-arm64-rootfs.sh). When both pass, the digest of images/ (images/twin/digest.py) is written to
# images/tested.sha256, to be committed with the change it tested. With --if-changed (what .ci/run uses) nothing
# runs when images/ still has the recorded digest: the tests run in CI when images/ or the units changed since
# their last recorded pass, and by hand otherwise. Needs root and the tools the two scripts name.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
python=python3
[ -x /usr/bin/python3 ] && python=/usr/bin/python3
digest=$("$python" "$here/twin/digest.py")
recorded=$(cat "$here/tested.sha256" 2>/dev/null || true)
if [ "${1:-}" = "--if-changed" ] && [ "$digest" = "$recorded" ]; then
    echo "images: unchanged since the image tests last passed (images/tested.sha256 $digest); not run"
    exit 0
fi
echo "images: digest $digest, last recorded pass ${recorded:-none}; running the twin and the arm64 check"

status=0
"$here/test-twin.sh" || status=1
"$here/test-arm64-rootfs.sh" || status=1
if [ "$status" -ne 0 ]; then
    echo "images: FAILED (see the lines above)"
    exit 1
fi
if [ "$("$python" "$here/twin/digest.py")" != "$digest" ]; then
    echo "images: images/ changed while the tests ran; passed, but nothing recorded"
    exit 1
fi
echo "$digest" > "$here/tested.sha256"
echo "images: both passed; images/tested.sha256 now $digest"
