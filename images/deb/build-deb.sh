#!/bin/sh
# build-deb.sh OUTDIR: build wardsight_<version>_<arch>.deb with dpkg-deb (no debhelper). Run by `make deb`.
#
# The agent goes into /opt/wardsight/venv, a virtual environment of $PYTHON (default /usr/bin/python3, the
# target's Python: the venv only works with the same Python minor version, which the package Depends on).
# Dependencies are installed isolated from the build host's own packages, then the venv is switched to see the
# system's site-packages, so that on the device python3-picamera2 (apt) is importable.
#
# Environment:
#   PYTHON      the target's Python (default /usr/bin/python3); its machine gives the .deb architecture
#   DEB_ARCH    override the architecture (default: dpkg --print-architecture)
#   WHEELHOUSE  a directory of wheels: install offline from it (pip --no-index --find-links), e.g. the
#               aarch64 wheels fetched with `pip download` (images/README.md, "The .deb for arm64")
#   DEB_COMPRESS  dpkg-deb compressor (default xz; gzip builds faster)
#   DEB_NO_DEPS=1 leave the dependencies out (a package that cannot run: for the packaging test only)
#   SOURCE_DATE_EPOCH  fixes file times for a reproducible package
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/build/deb}
PYTHON=${PYTHON:-/usr/bin/python3}
ARCH=${DEB_ARCH:-$(dpkg --print-architecture)}
COMPRESS=${DEB_COMPRESS:-xz}
VENV=/opt/wardsight/venv

version=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$repo/pyproject.toml")
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pynext=$("$PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')

work=$(mktemp -d "${TMPDIR:-/tmp}/wardsight-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root="$work/root"
mkdir -p "$root" "$work/wheels" "$out"

pipopts="--disable-pip-version-check --no-input --quiet"
if [ -n "${WHEELHOUSE:-}" ]; then
    pipopts="$pipopts --no-index --find-links $WHEELHOUSE"
fi

echo "build-deb: wardsight $version for $ARCH (Python $pyver)"
"$PYTHON" -m venv "$root$VENV"
# shellcheck disable=SC2086
"$root$VENV/bin/python" -m pip wheel $pipopts --no-deps --wheel-dir "$work/wheels" "$repo"
depopts=""
if [ "${DEB_NO_DEPS:-}" = 1 ]; then
    depopts="--no-deps"
fi
# shellcheck disable=SC2086
"$root$VENV/bin/python" -m pip install $pipopts $depopts --no-compile "$work/wheels"/wardsight-*.whl
"$root$VENV/bin/python" -m pip uninstall --quiet --yes pip setuptools >/dev/null 2>&1 || true

# Make the venv live at /opt/wardsight/venv: drop the build directory from shebangs, pyvenv.cfg and records.
grep -rlI --null -- "$root" "$root$VENV" | xargs -0 -r sed -i "s|$root||g"
sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' "$root$VENV/pyvenv.cfg"
find "$root$VENV" -name __pycache__ -type d -prune -exec rm -rf {} +
# The wheel was installed from the build directory: forget that URL (pip's direct_url.json and its record).
for record in "$root$VENV"/lib/python3*/site-packages/wardsight-*.dist-info/RECORD; do
    rm -f "$(dirname "$record")/direct_url.json"
    sed -i '/direct_url\.json/d' "$record"
done

install -D -m 0755 "$here/wardsight" "$root/usr/bin/wardsight"
for unit in "$here"/../systemd/*.service "$here"/../systemd/*.path; do
    install -D -m 0644 "$unit" "$root/lib/systemd/system/$(basename "$unit")"
done
install -D -m 0644 "$here/../polkit/50-wardsight.rules" "$root/etc/polkit-1/rules.d/50-wardsight.rules"
install -D -m 0644 "$here/agent.env" "$root/etc/wardsight/agent.env"
for helper in wardsight-firewall firstboot-stage firstboot-finish; do
    install -D -m 0755 "$here/lib/$helper" "$root/usr/lib/wardsight/$helper"
done
install -D -m 0644 "$here/../nftables/base.nft" "$root/usr/lib/wardsight/nftables/base.nft"
install -D -m 0644 "$here/../README.md" "$root/usr/share/doc/wardsight/README.image.md"
install -D -m 0644 "$here/copyright" "$root/usr/share/doc/wardsight/copyright"

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$size/" \
    -e "s/@PYDEPS@/python3 (>= $pyver), python3 (<< $pynext)/" "$here/control.in" > "$root/DEBIAN/control"
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done

if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then
    find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
fi
deb="$out/wardsight_${version}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$root" "$deb" >/dev/null
echo "build-deb: $deb"
