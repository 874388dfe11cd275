# Packaging. `make deb` builds build/deb/wardsight_<version>_<arch>.deb for this machine's architecture with
# the target's Python (default /usr/bin/python3); see images/README.md for arm64 and the image builds.
PYTHON ?= /usr/bin/python3
DEB_OUT ?= build/deb

.PHONY: deb
deb:
	PYTHON=$(PYTHON) images/deb/build-deb.sh $(DEB_OUT)
