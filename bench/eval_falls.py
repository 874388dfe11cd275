"""Fall detection on labelled clips, WardSight and the peer side by side, on every labelled set.

    python bench/eval_falls.py [LABELS ...] [--fps N | --rates full,10,5] [--threads 2] [--no-peer] [--json]

LABELS default to ../shared/data/upfall-dev/labels.csv and ../shared/data/gmdcsa24-dev/labels.csv (the
format of ``wardsight eval``: ``file`` and ``has_fall``; ``lands_on`` and ``fall_start_s`` where present).
WardSight runs exactly as ``wardsight eval`` (``firmware.evaluation.evaluate_falls``: the real pipeline). The
peer, neura-fall-detection 0.1.0's NFDModel at default settings, runs in its own virtual environment
(bench/.peer-venv, made from PyPI on first use) through bench/peer_runner.py on the same clips with the same
threads. Both are fed the same frames: every frame at ``full`` rate (the default), or at N fps only the first
frame of each 1/N second of the clip's own time, as a slower device would see it; ``--rates`` runs several
rates in one go. A clip counts as alerted by the peer when it raised at least one fall event, at the time of
the frame where the first appeared.

For each rate, one table per labelled set: per clip its kind (``floor``: a fall to the floor, which should
alert; ``bed``: a descent onto a bed, which should not; ``none``: no fall, which should not) and, for each
system, ``alert`` or ``-``, the time from the labelled fall start to the first alert (``+1.2 s``; ``at 3.4 s``
of the clip where the set has no labelled start) and MISSED or FALSE ALARM where the verdict is wrong. Then,
per set and overall, one line per system in the same shape: floor falls alerted, descents onto a bed alerted
as a fall, clips without a fall alerted, and the median and worst time from the labelled fall start to the
alert (floor falls alerted that have ``fall_start_s``). Both systems' figures come from
``firmware.evaluation.summarize`` with the same categories. ``--json`` prints one JSON document instead.

Nothing here is asserted (the timings depend on this machine and on the clips): it is run by hand, never in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelerators.catalog import MOVENET_MULTIPOSE  # noqa: E402
from accelerators.cpu import CpuPoseBackend  # noqa: E402
from bench.pipeline import PEER, peer_python  # noqa: E402
from firmware.apps.base import AppEvent  # noqa: E402
from firmware.evaluation import (  # noqa: E402
    ClipResult,
    FallSummary,
    as_json,
    clip_kind,
    evaluate_falls,
    fall_start,
    read_labels,
    summarize,
)
from wardsight.fetch import ArtifactStore  # noqa: E402
from wardsight.paths import data_dir, models_dir  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
DEFAULT_LABELS = [DATA / "upfall-dev" / "labels.csv", DATA / "gmdcsa24-dev" / "labels.csv"]


@dataclass
class PeerClip:
    """The peer's outcome on one clip, labelled as WardSight's ClipResult so ``summarize`` applies to both."""

    result: ClipResult
    path: str
    frames: int = 0
    seconds: float = 0.0
    fall_events: int = 0


def parse_rate(text: str) -> float | None:
    """``full`` (every frame) or a positive number of frames per second."""
    if text.strip().lower() == "full":
        return None
    try:
        fps = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a rate is 'full' or frames per second, not {text!r}") from None
    if not fps > 0:
        raise argparse.ArgumentTypeError(f"frames per second must be positive, not {text!r}")
    return fps


def parse_rates(text: str) -> list[float | None]:
    rates = [parse_rate(part) for part in text.split(",") if part.strip()]
    if not rates:
        raise argparse.ArgumentTypeError("no rate given")
    return rates


def rate_name(fps: float | None) -> str:
    return "full rate (every frame)" if fps is None else f"{fps:g} fps"


def plan_peer(labels: Sequence[Path]) -> list[PeerClip]:
    """Every labelled clip, with the same kinds and labelled starts as ``evaluate_falls`` gives WardSight's."""
    clips = []
    for path in labels:
        for number, row in enumerate(read_labels(path), start=2):
            where = f"{path}, line {number}"
            result = ClipResult(
                path.parent.name,
                row["file"],
                clip_kind(row, where),
                row.get("activity_name") or row.get("activity", ""),
                row.get("camera", ""),
                fall_start(row, where),
            )
            clips.append(PeerClip(result, str(path.parent / row["file"])))
    return clips


def run_peer(labels: Sequence[Path], threads: int, fps: float | None) -> list[PeerClip]:
    clips = plan_peer(labels)
    rate = [] if fps is None else ["--fps", repr(fps)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    print(f"[peer, {rate_name(fps)}] {len(clips)} clips ...", file=sys.stderr, flush=True)
    out = subprocess.run(
        [str(peer_python()), str(ROOT / "bench" / "peer_runner.py"), *rate, str(threads), *(c.path for c in clips)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if out.returncode:
        sys.exit(f"the peer failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    raw: dict[str, dict[str, Any]] = json.loads(out.stdout)
    for clip in clips:
        got = raw[clip.path]
        clip.frames, clip.seconds, clip.fall_events = got["frames"], got["seconds"], got["fall_events"]
        clip.result.frames = clip.frames
        if got["first_fall_time"] is not None:
            clip.result.alerts = [AppEvent("fall", "fall", float(got["first_fall_time"]))]
    return clips


def cell(r: ClipResult) -> str:
    if not r.alerted:
        text = "-"
    elif r.seconds_to_alert is not None:
        text = f"alert {r.seconds_to_alert:+.1f} s"
    else:
        text = f"alert at {r.alerts[0].time:.1f} s"
    if not r.correct:
        text += " MISSED" if r.kind == "floor" else " FALSE ALARM"
    return text


def summary_line(s: FallSummary) -> str:
    timing = (
        f"median {s.median_seconds_to_alert:.1f} s, worst {s.worst_seconds_to_alert:.1f} s ({s.timed_falls} timed)"
        if s.median_seconds_to_alert is not None and s.worst_seconds_to_alert is not None
        else "n/a (no floor fall with a labelled start alerted)"
    )
    return (
        f"floor falls alerted {s.floor_alerted}/{s.floor_falls}; "
        f"descents onto a bed alerted as fall {s.bed_alerted}/{s.bed_falls}; "
        f"clips without a fall alerted {s.false_alarm_clips}/{s.non_falls}; "
        f"labelled fall start to alert: {timing}"
    )


def print_rate(fps: float | None, ours: list[ClipResult], peer: list[PeerClip] | None) -> None:
    theirs = {(c.result.labels, c.result.file): c.result for c in peer} if peer is not None else {}
    print(f"\n=== {rate_name(fps)} ===")
    sets = list(dict.fromkeys(r.labels for r in ours))
    for name in sets:
        mine = [r for r in ours if r.labels == name]
        print(f"\n{name}")
        print(f"  {'clip':<18} {'kind':<6} {'WardSight':<28} {'peer' if peer is not None else ''}")
        for r in mine:
            other = theirs.get((r.labels, r.file))
            print(f"  {r.file:<18} {r.kind:<6} {cell(r):<28} {cell(other) if other else ''}".rstrip())
        print(f"  WardSight: {summary_line(summarize(mine))}")
        if peer is not None:
            print(f"  peer:      {summary_line(summarize([theirs[(r.labels, r.file)] for r in mine]))}")
    print(f"\nall sets ({', '.join(sets)}) at {rate_name(fps)}")
    print(f"  WardSight: {summary_line(summarize(ours))}")
    if peer is not None:
        print(f"  peer:      {summary_line(summarize([c.result for c in peer]))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", type=Path, nargs="*", default=DEFAULT_LABELS, help="labels CSV files")
    rates = parser.add_mutually_exclusive_group()
    rates.add_argument("--fps", type=parse_rate, default=None, help="feed N frames per second of clip time")
    rates.add_argument("--rates", type=parse_rates, default=None, help="several rates, e.g. full,10,5")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    labels: list[Path] = list(args.labels)
    run_rates: list[float | None] = args.rates if args.rates is not None else [args.fps]

    store = ArtifactStore(models_dir(data_dir()))
    backend = CpuPoseBackend(store.ensure(MOVENET_MULTIPOSE.artifact), num_threads=args.threads)
    if not args.no_peer:
        with contextlib.redirect_stdout(sys.stderr):  # its note on the first run stays out of the output
            peer_python()  # made before the first (long) WardSight run, so a failed install shows at once
    document: list[dict[str, Any]] = []
    for fps in run_rates:

        def progress(r: ClipResult, fps: float | None = fps) -> None:
            print(f"[WardSight, {rate_name(fps)}] {r.labels}/{r.file}", file=sys.stderr, flush=True)

        ours = evaluate_falls(labels, backend, fps=fps, progress=progress)
        peer = None if args.no_peer else run_peer(labels, args.threads, fps)
        if args.json:
            entry: dict[str, Any] = {"fps": fps, "wardsight": as_json(ours, fps)}
            if peer is not None:
                entry["peer"] = as_json([c.result for c in peer], fps)
                entry["peer"]["name"] = PEER
                for clip, row in zip(peer, entry["peer"]["clips"], strict=True):
                    row["fall_events"] = clip.fall_events
            document.append(entry)
        else:
            print_rate(fps, ours, peer)
            sys.stdout.flush()
    if args.json:
        print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
