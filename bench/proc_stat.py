"""CPU time of a process tree from Linux ``/proc`` (for the benchmarks): a server and its workers, PostgreSQL.

A tree's CPU time is its root's user + system time, plus what its children that ended and were waited for used
(``cutime`` + ``cstime``: a PostgreSQL backend whose connection closed, a restarted worker), plus the same for each
live child, recursively. Sampled before and after a phase, the difference is the CPU the tree used in between.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (index 0 is the state); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def own_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` itself (0 if it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _with_reaped_children(fields: list[str]) -> float:
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLOCK_TICKS  # utime, stime, cutime, cstime


def runqueue_seconds(pid: int) -> float:
    """Seconds all threads of ``pid`` were runnable but not running (Linux schedstat; 0 if unavailable)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[1])
    return total / 1e9


@dataclass
class TreeSample:
    """One look at a process tree: CPU seconds of the whole tree, of its root alone, of each direct child's subtree
    (by pid), and the seconds its live threads waited for a core."""

    total: float = 0.0
    root: float = 0.0
    children: dict[int, float] = field(default_factory=dict)
    runqueue: float = 0.0

    def minus(self, before: TreeSample) -> TreeSample:
        """What was used between ``before`` and this sample (a child that started in between counts from 0)."""
        return TreeSample(
            self.total - before.total,
            self.root - before.root,
            {pid: cpu - before.children.get(pid, 0.0) for pid, cpu in self.children.items()},
            self.runqueue - before.runqueue,
        )


def _subtree(pid: int, parents: dict[int, list[int]]) -> tuple[float, float]:
    """(CPU seconds, run-queue seconds) of ``pid`` and its descendants."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0, 0.0
    cpu, waited = _with_reaped_children(fields), runqueue_seconds(pid)
    for child in parents.get(pid, []):
        c, w = _subtree(child, parents)
        cpu, waited = cpu + c, waited + w
    return cpu, waited


def sample_tree(pid: int) -> TreeSample:
    """CPU of ``pid`` and all its descendants now (one scan of ``/proc``)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    sample = TreeSample(root=own_seconds(pid))
    fields = _stat_fields(pid)
    if fields is None:
        return sample
    sample.total = _with_reaped_children(fields)
    sample.runqueue = runqueue_seconds(pid)
    for child in sorted(parents.get(pid, [])):
        cpu, waited = _subtree(child, parents)
        sample.children[child] = cpu
        sample.total += cpu
        sample.runqueue += waited
    return sample
