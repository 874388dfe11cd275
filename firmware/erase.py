"""Erasing a file that held a secret (an enrollment bundle's token, a device key): overwrite, sync, delete.

The bytes are overwritten in place with as many zeros (same length; not a new file renamed over the old one,
which would leave the old blocks as they were), synced, then the file is deleted and its directory synced. On
FAT and ext4 this overwrites the blocks the file had; an SD card's or SSD's wear levelling may still keep old
copies in flash that no file system call can reach.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wardsight.errors import WardSightError
from wardsight.paths import fsync_dir

_ZEROS = bytes(64 * 1024)


def erase_file(path: Path) -> bool:
    """Overwrite ``path`` with zeros, sync it, delete it, sync its directory; False when there was no file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise WardSightError(f"cannot erase {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WardSightError(f"cannot erase {path}: not a regular file")
        left = info.st_size
        while left > 0:
            left -= os.write(fd, _ZEROS[: min(len(_ZEROS), left)])
        os.fsync(fd)
    except OSError as exc:
        raise WardSightError(f"cannot erase {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        path.unlink()
        fsync_dir(path.parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise WardSightError(f"overwrote {path} but cannot delete it: {exc.strerror}") from None
    return True
