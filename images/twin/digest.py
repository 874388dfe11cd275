"""The digest of what the image tests test: every file under images/ that git tracks or would track (the
working tree's contents and executable bits; the Markdown documentation and images/tested.sha256 itself left out,
and the A/B twin's own files (images/test-twin-ab.sh, images/twin/ab*.py, the wardsight-twin-ab layer): that test
runs by hand only, so these two tests do not test them).

images/test-images.sh writes it to images/tested.sha256 when the twin and the arm64 check both pass; .ci/run runs
the image tests only when the tree's digest differs from that record (images/README.md, "In CI").
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RECORD = "images/tested.sha256"
AB_ONLY = ("images/test-twin-ab.sh", "images/twin/ab", "images/twin/layer/wardsight-twin-ab")  # prefixes


def images_digest(repo: Path = REPO) -> str:
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "images"],
        check=True, capture_output=True,
    ).stdout.decode().split("\0")
    total = hashlib.sha256()
    tested = {n for n in listed if n and n != RECORD and not n.endswith(".md") and not n.startswith(AB_ONLY)}
    for name in sorted(tested):
        path = repo / name
        if not path.is_file():  # tracked but deleted in the working tree
            continue
        executable = "x" if os.access(path, os.X_OK) else "-"
        total.update(f"{name}\0{executable}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return total.hexdigest()


if __name__ == "__main__":
    sys.stdout.write(images_digest() + "\n")
