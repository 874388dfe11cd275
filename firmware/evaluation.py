"""``wardsight eval``: run the real pipeline on labelled clips and report fall figures.

A labels file is a CSV with at least ``file`` (a video beside the labels file, or under ``--clips``) and
``has_fall`` (1 or 0); ``activity``, ``activity_name`` and ``camera`` are shown when present (the UP-Fall
development set's columns). Two more are used where a set has them (GMDCSA24's development set does):
``lands_on`` (``floor`` or ``bed``; a fall without it counts as a floor fall) and ``fall_start_s``, the
labelled start of the fall, from which the time to the alert is measured. Several labels files run in one
go. Each clip runs through the same source, pose model, tracker and apps as the agent, as fast as the CPU
allows, with the clip's own clock; ``fps`` feeds only the first frame of each 1/fps of the clip's time, as a
slower device would see it.

Figures are split three ways: falls to the floor (each should alert ``fall``), descents onto a bed (not a fall
by the clinical definition: each should stay silent), and clips without a fall (each should stay silent).
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from accelerators.base import Backend
from firmware.agent import Agent
from firmware.apps.base import AppEvent
from firmware.apps.fall import FallApp, FallConfig
from firmware.sources import VideoFileSource
from wardsight.clictx import Context, pass_context
from wardsight.errors import WardSightError

REQUIRED = ("file", "has_fall")
Kind = Literal["floor", "bed", "none"]


@dataclass
class ClipResult:
    labels: str  # the labelled set: the labels file's folder name
    file: str
    kind: Kind
    activity: str
    camera: str
    fall_start: float | None  # labelled start of the fall, seconds from the clip's start
    frames: int = 0
    alerts: list[AppEvent] = field(default_factory=list)

    @property
    def alerted(self) -> bool:
        return bool(self.alerts)

    @property
    def correct(self) -> bool:
        return self.alerted == (self.kind == "floor")

    @property
    def seconds_to_alert(self) -> float | None:
        """From the labelled fall start to the first alert."""
        if not self.alerts or self.fall_start is None:
            return None
        return self.alerts[0].time - self.fall_start


def read_labels(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WardSightError(f"cannot read labels {path}: {exc}") from None
    if not rows:
        raise WardSightError(f"{path}: no labelled clips")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise WardSightError(f"{path}: missing column '{missing[0]}' (need {', '.join(REQUIRED)})")
    return rows


def clip_kind(row: dict[str, str], where: str) -> Kind:
    has_fall = (row.get("has_fall") or "").strip()
    if has_fall not in ("0", "1"):
        raise WardSightError(f"{where}: has_fall must be 0 or 1, not {has_fall!r}")
    if has_fall == "0":
        return "none"
    lands = (row.get("lands_on") or "floor").strip().lower()
    if lands not in ("floor", "bed"):
        raise WardSightError(f"{where}: lands_on must be floor or bed, not {lands!r}")
    return "floor" if lands == "floor" else "bed"


def fall_start(row: dict[str, str], where: str) -> float | None:
    text = (row.get("fall_start_s") or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise WardSightError(f"{where}: fall_start_s must be seconds, not {text!r}") from None


def evaluate_falls(
    labels: Path | Sequence[Path],
    backend: Backend,
    *,
    clips_dir: Path | None = None,
    config: FallConfig | None = None,
    fps: float | None = None,
    progress: Callable[[ClipResult], None] | None = None,
) -> list[ClipResult]:
    """Every clip of every labels file through the real pipeline; labels are all read (and checked) first."""
    sets = [labels] if isinstance(labels, Path) else list(labels)
    planned = []
    for path in sets:
        for number, row in enumerate(read_labels(path), start=2):
            where = f"{path}, line {number}"
            clip = (clips_dir or path.parent) / row["file"]
            if not clip.is_file():
                raise WardSightError(f"{where}: no clip {clip}")
            activity = row.get("activity_name") or row.get("activity", "")
            kind, start = clip_kind(row, where), fall_start(row, where)
            result = ClipResult(path.parent.name, row["file"], kind, activity, row.get("camera", ""), start)
            planned.append((clip, result))
    results = []
    for clip, result in planned:
        app = FallApp(config)
        # Times in seconds from the clip's start, from its own frame rate.
        source = VideoFileSource(clip, realtime=False, clock=lambda: 0.0, fps=fps)
        events: list[AppEvent] = []
        agent = Agent(source, backend, [app], emit=events.append)
        agent.run()
        result.frames = agent.stats.processed
        result.alerts = [e for e in events if e.type == "fall"]
        results.append(result)
        if progress:
            progress(result)
    return results


@dataclass(frozen=True)
class FallSummary:
    floor_falls: int
    floor_alerted: int
    bed_falls: int
    bed_alerted: int  # descents onto a bed that raised ``fall`` (should be none)
    non_falls: int
    false_alarm_clips: int
    timed_falls: int  # floor falls alerted that have a labelled start
    median_seconds_to_alert: float | None
    worst_seconds_to_alert: float | None

    @property
    def sensitivity(self) -> float:
        return self.floor_alerted / self.floor_falls if self.floor_falls else float("nan")


def summarize(results: Sequence[ClipResult]) -> FallSummary:
    floor = [r for r in results if r.kind == "floor"]
    bed = [r for r in results if r.kind == "bed"]
    none = [r for r in results if r.kind == "none"]
    delays = [d for r in floor if (d := r.seconds_to_alert) is not None]
    return FallSummary(
        len(floor),
        sum(r.alerted for r in floor),
        len(bed),
        sum(r.alerted for r in bed),
        len(none),
        sum(r.alerted for r in none),
        len(delays),
        statistics.median(delays) if delays else None,
        max(delays) if delays else None,
    )


def format_summary(s: FallSummary) -> str:
    lines = [
        f"falls to the floor alerted: {s.floor_alerted}/{s.floor_falls}"
        + (f" (sensitivity {100 * s.sensitivity:.0f}%)" if s.floor_falls else ""),
        f"clips without a fall that alerted: {s.false_alarm_clips}/{s.non_falls}",
    ]
    if s.bed_falls:
        lines.append(f"descents onto a bed that alerted as a fall: {s.bed_alerted}/{s.bed_falls}")
    if s.median_seconds_to_alert is not None and s.worst_seconds_to_alert is not None:
        lines.append(
            f"time from the labelled fall start to the alert: median {s.median_seconds_to_alert:.1f} s, worst"
            f" {s.worst_seconds_to_alert:.1f} s ({s.timed_falls} falls with a labelled start)"
        )
    return "\n".join(lines)


def as_json(results: Sequence[ClipResult], fps: float | None) -> dict[str, Any]:
    summary = summarize(results)
    return {
        "fps": fps,
        "summary": {**asdict(summary), "sensitivity": summary.sensitivity if summary.floor_falls else None},
        "clips": [
            {
                "labels": r.labels,
                "file": r.file,
                "kind": r.kind,
                "frames": r.frames,
                "alerted": r.alerted,
                "correct": r.correct,
                "alert_times": [round(a.time, 3) for a in r.alerts],
                "fall_start": r.fall_start,
                "seconds_to_alert": None if r.seconds_to_alert is None else round(r.seconds_to_alert, 3),
            }
            for r in results
        ],
    }


def clip_line(r: ClipResult) -> str:
    alerts = ", ".join(f"{a.time:.1f} s" for a in r.alerts) or "-"
    delay = "" if r.seconds_to_alert is None else f" ({r.seconds_to_alert:.1f} s after the labelled start)"
    expected = {"floor": "fall", "bed": "onto bed", "none": "no fall"}[r.kind]
    verdict = "ok" if r.correct else ("MISSED" if r.kind == "floor" else "FALSE ALARM")
    return f"{r.labels + '/' + r.file:<36} {expected:<8} frames={r.frames:<4} alerts: {alerts + delay:<40} {verdict}"


@click.command("eval")
@click.argument("labels", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--clips", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Clip folder (default: beside each labels file).")
@click.option("--fps", type=click.FloatRange(min=0.5, max=120), default=None,
              help="Feed at most N frames per second of each clip's time (a Pi sees 5-15).")
@click.option("--threads", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--json", "as_json_output", is_flag=True, help="Print one JSON document instead of lines.")
@pass_context
def eval_command(
    ctx: Context, labels: tuple[Path, ...], clips: Path | None, fps: float | None, threads: int, as_json_output: bool
) -> None:
    """Run the real pipeline on labelled clips and print fall-detection figures.

    LABELS are CSV files with at least the columns file and has_fall (UP-Fall's format); lands_on (floor or bed)
    and fall_start_s are used where present. Figures: falls to the floor alerted, descents onto a bed alerted as a
    fall, clips without a fall that alerted, and the time from the labelled fall start to the alert.

    \b
    Example:
        wardsight eval ../shared/data/upfall-dev/labels.csv ../shared/data/gmdcsa24-dev/labels.csv --fps 10
    """
    from accelerators.catalog import MOVENET_MULTIPOSE
    from accelerators.cpu import CpuPoseBackend
    from wardsight.fetch import ArtifactStore
    from wardsight.paths import models_dir

    store = ArtifactStore(models_dir(ctx.data_dir))
    # Fetched and verified on first use, as the demo does.
    backend = CpuPoseBackend(store.ensure(MOVENET_MULTIPOSE.artifact), num_threads=threads)
    show = None if as_json_output else (lambda r: click.echo(clip_line(r)))
    results = evaluate_falls(list(labels), backend, clips_dir=clips, fps=fps, progress=show)
    if as_json_output:
        click.echo(json.dumps(as_json(results, fps), indent=2))
    else:
        rate = "each clip's own frame rate" if fps is None else f"{fps:g} fps"
        click.echo(f"at {rate}:")
        click.echo(format_summary(summarize(results)))
