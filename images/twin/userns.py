"""Run a command in a private user and mount namespace with qemu-user registered for arm64 there only.

Usage: userns.py COMMAND [ARG...]   (as root)

The child gets user ids 0-65535 mapped to the same ids outside (a Debian rootfs needs its system users), its own
mount namespace, and its own ``binfmt_misc`` (Linux 6.7+) with ``qemu-aarch64-static`` registered with the
``F`` flag (the interpreter is opened now, so it works inside the chroot). The host's binfmt_misc is untouched:
nothing is registered outside, and everything vanishes when the command ends. The maps are written by this
parent process (root outside), as newuidmap would, because /etc/subuid need not have a range for root.
"""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
IDS = 65536
QEMU = "/usr/bin/qemu-aarch64-static"
# The ELF header of an aarch64 executable and its mask (as in Debian's qemu-user-static binfmt file).
AARCH64 = (
    ":qemu-aarch64:M::"
    r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:"
    r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:"
    f"{QEMU}:F"
)


def child(ready: int, go: int, command: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER | CLONE_NEWNS)")
    os.write(ready, b"1")
    os.read(go, 1)  # the parent has written our uid/gid maps
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    if libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC | MS_PRIVATE
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if libc.mount(b"binfmt_misc", b"/proc/sys/fs/binfmt_misc", b"binfmt_misc", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount binfmt_misc in the user namespace (needs Linux 6.7 or later)")
    with open("/proc/sys/fs/binfmt_misc/register", "w") as register:
        register.write(AARCH64)
    os.execvp(command[0], command)  # noqa: S606 - the command line given, no shell


def main() -> int:
    command = sys.argv[1:]
    if not command:
        print(__doc__)
        return 2
    if not os.path.exists(QEMU):
        print(f"userns: {QEMU} is missing (apt-get install qemu-user-static)")
        return 2
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child(ready_w, go_r, command)
        except OSError as exc:
            print(f"userns: {exc}", file=sys.stderr)
        os._exit(127)
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as mapping:
            mapping.write(f"0 0 {IDS}\n")
    os.write(go_w, b"1")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
