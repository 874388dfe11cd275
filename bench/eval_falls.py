"""Fall detection on labelled clips, WardSight and the peer side by side.

    python bench/eval_falls.py [LABELS] [--threads 2] [--no-peer]

LABELS defaults to ../shared/data/upfall-dev/labels.csv. WardSight runs exactly as ``wardsight eval``
(the real pipeline); the peer, neura-fall-detection 0.1.0's NFDModel at default settings, runs in its
own virtual environment (bench/.peer-venv, made on first use) on the same clips with the same threads,
and a clip counts as alerted by the peer when it raised at least one fall event.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelerators.catalog import MOVENET_MULTIPOSE  # noqa: E402
from accelerators.cpu import CpuPoseBackend  # noqa: E402
from bench.pipeline import peer_python  # noqa: E402
from firmware.evaluation import evaluate_falls, format_summary, read_labels, summarize  # noqa: E402
from wardsight.fetch import ArtifactStore  # noqa: E402
from wardsight.paths import data_dir, models_dir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", type=Path, nargs="?", default=ROOT.parent / "shared/data/upfall-dev/labels.csv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()

    store = ArtifactStore(models_dir(data_dir()))
    backend = CpuPoseBackend(store.ensure(MOVENET_MULTIPOSE.artifact), num_threads=args.threads)
    ours = evaluate_falls(args.labels, backend)
    peer: dict[str, dict[str, float]] = {}
    if not args.no_peer:
        clips = [str(args.labels.parent / row["file"]) for row in read_labels(args.labels)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        out = subprocess.run(
            [str(peer_python()), str(ROOT / "bench" / "peer_runner.py"), str(args.threads), *clips],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        peer = {Path(k).name: v for k, v in json.loads(out.stdout).items()}

    print(f"{'clip':<18} {'fall':>4}  {'WardSight':<26} {'peer':<8}")
    peer_hits = peer_false = 0
    for r in ours:
        mine = f"alert, fell {r.alerts[0].data['seconds_since_fall']} s before" if r.alerts else "-"
        p = peer.get(r.file, {}).get("fall_events", 0)
        peer_hits += bool(p) and r.has_fall
        peer_false += bool(p) and not r.has_fall
        print(f"{r.file:<18} {int(r.has_fall):>4}  {mine:<26} {'alert' if p else '-':<8}")
    print("WardSight: " + format_summary(summarize(ours)))
    if peer:
        falls = sum(r.has_fall for r in ours)
        non_falls = len(ours) - falls
        print(f"peer: falls alerted {peer_hits}/{falls}; clips without a fall that alerted: {peer_false}/{non_falls}")


if __name__ == "__main__":
    main()
