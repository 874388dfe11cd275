"""``wardsight eval``: run the real pipeline on labelled clips and report per-app figures.

The labels file has the columns of the UP-Fall development set's ``labels.csv``: ``file`` (a video
beside the labels file, or under ``--clips``), ``activity``, ``activity_name``, ``has_fall`` (1 or 0) and
``camera``; other labelled sets in that format need no code change. Each clip runs through the same
source, pose model, tracker and apps as the agent, as fast as the CPU allows, with the clip's own clock.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from accelerators.base import Backend
from firmware.agent import Agent
from firmware.apps.base import AppEvent
from firmware.apps.fall import FallApp, FallConfig
from firmware.sources import VideoFileSource
from wardsight.clictx import Context, pass_context
from wardsight.errors import WardSightError

REQUIRED = ("file", "has_fall")


@dataclass
class ClipResult:
    file: str
    has_fall: bool
    activity: str
    camera: str
    frames: int = 0
    alerts: list[AppEvent] = field(default_factory=list)

    @property
    def alerted(self) -> bool:
        return bool(self.alerts)


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


def evaluate_falls(
    labels: Path,
    backend: Backend,
    *,
    clips_dir: Path | None = None,
    config: FallConfig | None = None,
    progress: Callable[[ClipResult], None] | None = None,
) -> list[ClipResult]:
    results = []
    for row in read_labels(labels):
        path = (clips_dir or labels.parent) / row["file"]
        result = ClipResult(row["file"], row["has_fall"].strip() == "1", row.get("activity", ""), row.get("camera", ""))
        app = FallApp(config)
        source = VideoFileSource(path, realtime=False, clock=lambda: 0.0)  # times in seconds from the clip's start
        agent = Agent(source, backend, [app], emit=result.alerts.append)
        agent.run()
        result.frames = agent.stats.processed
        result.alerts = [e for e in result.alerts if e.type == "fall"]
        results.append(result)
        if progress:
            progress(result)
    return results


@dataclass(frozen=True)
class FallSummary:
    falls: int
    alerted_falls: int
    non_falls: int
    false_alarm_clips: int
    median_seconds_to_alert: float | None

    @property
    def sensitivity(self) -> float:
        return self.alerted_falls / self.falls if self.falls else float("nan")


def summarize(results: list[ClipResult]) -> FallSummary:
    falls = [r for r in results if r.has_fall]
    non = [r for r in results if not r.has_fall]
    delays = [float(r.alerts[0].data["seconds_since_fall"]) for r in falls if r.alerts]
    return FallSummary(
        len(falls),
        sum(r.alerted for r in falls),
        len(non),
        sum(r.alerted for r in non),
        statistics.median(delays) if delays else None,
    )


def format_summary(s: FallSummary) -> str:
    delay = "n/a" if s.median_seconds_to_alert is None else f"{s.median_seconds_to_alert:.1f} s"
    return (
        f"falls alerted: {s.alerted_falls}/{s.falls} (sensitivity {100 * s.sensitivity:.0f}%); "
        f"clips without a fall that alerted: {s.false_alarm_clips}/{s.non_falls}; "
        f"median time from the fall to the alert: {delay}"
    )


@click.command("eval")
@click.argument("labels", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--clips", type=click.Path(file_okay=False, exists=True, path_type=Path), help="Clip folder.")
@click.option("--threads", type=click.IntRange(1, 16), default=2, show_default=True)
@pass_context
def eval_command(ctx: Context, labels: Path, clips: Path | None, threads: int) -> None:
    """Run the real pipeline on labelled clips and print fall-detection figures.

    LABELS is a CSV with the columns file, activity, activity_name, has_fall, camera (the UP-Fall format).
    The time to alert runs from the last moment the person was seen standing.

    \b
    Example:
        wardsight eval ../shared/data/upfall-dev/labels.csv
    """
    from accelerators.catalog import MOVENET_MULTIPOSE
    from accelerators.cpu import CpuPoseBackend
    from wardsight.fetch import ArtifactStore
    from wardsight.paths import models_dir

    store = ArtifactStore(models_dir(ctx.data_dir))
    backend = CpuPoseBackend(store.require(MOVENET_MULTIPOSE.artifact), num_threads=threads)

    def show(r: ClipResult) -> None:
        alerts = ", ".join(f"{a.time:.1f}s (fell {a.data['seconds_since_fall']}s before)" for a in r.alerts) or "-"
        verdict = ("ok" if r.alerted else "MISSED") if r.has_fall else ("FALSE ALARM" if r.alerted else "ok")
        click.echo(f"{r.file:<22} fall={int(r.has_fall)} frames={r.frames:<4} alerts: {alerts:<40} {verdict}")

    results = evaluate_falls(labels, backend, clips_dir=clips, progress=show)
    click.echo(format_summary(summarize(results)))
