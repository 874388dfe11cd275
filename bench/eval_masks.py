"""How well the face-mask detectors find and classify labelled faces (run by hand, never in CI).

Reads a labels.csv (image,xmin,ymin,xmax,ymax,label; one face per row, images beside it), runs a detector
on every image, matches detections to labelled faces one-to-one (greedy by IoU, IoU >= 0.5) and prints
per-class recall (found; found and correctly classified) and the precision of the calls.

Detectors: ``two-stage`` (default: BlazeFace full range on the frame and 2x2 tiles plus AIZOO's own faces,
then AIZOO on each face crop, ``accelerators.faces``) and ``aizoo`` (the AIZOO SSD alone, at its defaults).
A two-stage face AIZOO cannot classify in its crop is "unknown": it is neither a mask nor a no-mask call,
is counted on its own line, and never counts as found or correct.

    /tmp/venv/bin/python bench/eval_masks.py [--detector two-stage|aizoo] [--compare] [--labels PATH]
        [--min-score S] [--iou-match T] [--model PATH] [--face-model PATH]

By default the models come through the artifact store (verified by sha256): AIZOO from ../shared/models,
BlazeFace from the mediapipe wheel on PyPI.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from accelerators.blaze import box_iou
from accelerators.facemask import FACEMASK_AIZOO, CpuFaceMaskDetector
from accelerators.faces import TwoStageMaskDetector
from accelerators.mediapipe_models import FACE_FULL_RANGE
from wardsight.fetch import ArtifactStore

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
EXPECTED_CALL = {"with_mask": "mask", "without_mask": "no_mask", "mask_weared_incorrect": "no_mask"}

DETECTORS = ("two-stage", "aizoo")

Box = tuple[float, float, float, float]
Detection = tuple[Box, str, float]  # box, call ("mask" | "no_mask" | "unknown"), score
Detect = Callable[[np.ndarray], list[Detection]]


def match(faces: list[tuple[Box, str]], dets: list[Detection], threshold: float) -> dict[int, int]:
    """Greedy one-to-one matching, highest IoU first: {face index: detection index}."""
    pairs = sorted(
        ((box_iou(fb, d[0]), fi, di) for fi, (fb, _) in enumerate(faces) for di, d in enumerate(dets)),
        reverse=True,
    )
    taken_f: dict[int, int] = {}
    taken_d: set[int] = set()
    for value, fi, di in pairs:
        if value < threshold:
            break
        if fi in taken_f or di in taken_d:
            continue
        taken_f[fi] = di
        taken_d.add(di)
    return taken_f


def read_labels(path: Path) -> dict[str, list[tuple[Box, str]]]:
    by_image: dict[str, list[tuple[Box, str]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            box = (float(row["xmin"]), float(row["ymin"]), float(row["xmax"]), float(row["ymax"]))
            by_image[row["image"]].append((box, row["label"]))
    return dict(by_image)


def pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:5.1f}% ({n}/{d})" if d else "  n/a"


def make_detector(name: str, aizoo: Path, face: Path, min_score: float, threads: int) -> tuple[Detect, str]:
    """The detector as a function frame -> detections, and a line describing its settings."""
    if name == "aizoo":
        single = CpuFaceMaskDetector(aizoo, num_threads=threads, min_score=min_score)
        return (
            lambda rgb: [(d.box, d.label, d.score) for d in single.detect(rgb)],
            f"aizoo: {FACEMASK_AIZOO.name}, min_score {min_score}, NMS IoU {single.iou}",
        )
    two = TwoStageMaskDetector(face, aizoo, num_threads=threads, proposal_min_score=min_score)
    return (
        lambda rgb: [(d.box, d.label, d.mask_score) for d in two.detect_all(rgb)],
        f"two-stage: {FACE_FULL_RANGE.name} (min score {two.faces.min_score}, tiles {two.faces.tile_grid}x"
        f"{two.faces.tile_grid} + frame) + {FACEMASK_AIZOO.name} proposals (min score {two.proposal_min_score}), "
        f"merge IoU {two.merge_iou}; crop x{two.crop_margin}, crop call min score {two.mask_min_score}",
    )


def evaluate(labels: Path, detect: Detect, describe: str, iou_match: float, threads: int) -> dict[str, float]:
    truth = read_labels(labels)
    total: Counter[str] = Counter()
    found: Counter[str] = Counter()  # matched by a detection with a call (mask / no_mask)
    correct: Counter[str] = Counter()
    unknown_found: Counter[str] = Counter()  # matched only by an "unknown" detection
    calls: Counter[str] = Counter()  # detections by label
    right_calls: Counter[str] = Counter()  # detections matched to a face whose class agrees with the call
    seconds = 0.0
    for image, faces in sorted(truth.items()):
        bgr = cv2.imread(str(labels.parent / image))
        if bgr is None:
            raise SystemExit(f"cannot read {labels.parent / image}")
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        start = time.perf_counter()
        dets = detect(rgb)
        seconds += time.perf_counter() - start
        calls.update(d[1] for d in dets)
        matched = match(faces, dets, iou_match)
        for fi, (_, label) in enumerate(faces):
            total[label] += 1
            if fi not in matched:
                continue
            call = dets[matched[fi]][1]
            if call == "unknown":
                unknown_found[label] += 1
                continue
            found[label] += 1
            if call == EXPECTED_CALL[label]:
                correct[label] += 1
                right_calls[call] += 1

    ms = 1000 * seconds / max(len(truth), 1)
    print(f"labels {labels}: {len(truth)} images, {sum(total.values())} faces")
    print(describe)
    print(f"match IoU >= {iou_match}; mean detect time {ms:.1f} ms per image ({threads} threads)")
    print()
    print(f"{'class':<24}{'found':>22}{'found + correctly classified':>34}{'matched, unknown':>20}")
    for cls in CLASSES:
        print(f"{cls:<24}{pct(found[cls], total[cls]):>22}{pct(correct[cls], total[cls]):>34}{unknown_found[cls]:>20}")
    unmasked = ("without_mask", "mask_weared_incorrect")
    n_unmasked = sum(total[c] for c in unmasked)
    print(
        f"{'no mask (both classes)':<24}{pct(sum(found[c] for c in unmasked), n_unmasked):>22}"
        f"{pct(sum(correct[c] for c in unmasked), n_unmasked):>34}{sum(unknown_found[c] for c in unmasked):>20}"
    )
    print()
    print(
        f"precision of no_mask calls (match a without_mask / mask_weared_incorrect face): "
        f"{pct(right_calls['no_mask'], calls['no_mask'])}"
    )
    print(f"precision of mask calls (match a with_mask face): {pct(right_calls['mask'], calls['mask'])}")
    print(f"unknown (no call): {calls['unknown']} detections, {sum(unknown_found.values())} of them on a labelled face")
    print()
    return {
        "with_mask": found["with_mask"] / max(total["with_mask"], 1),
        "no_mask": sum(found[c] for c in unmasked) / max(n_unmasked, 1),
        "no_mask_precision": right_calls["no_mask"] / max(calls["no_mask"], 1),
        "ms": ms,
    }


def summary_line(name: str, r: dict[str, float]) -> str:
    return (
        f"{name:<10} with_mask found {100 * r['with_mask']:5.1f}%  no-mask found {100 * r['no_mask']:5.1f}%  "
        f"no-mask call precision {100 * r['no_mask_precision']:5.1f}%  {r['ms']:6.1f} ms/image"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", choices=DETECTORS, default="two-stage")
    parser.add_argument("--compare", action="store_true", help="run both detectors and print both")
    parser.add_argument("--labels", type=Path, default=SHARED / "data" / "mask-dev" / "labels.csv")
    parser.add_argument(
        "--min-score", type=float, default=0.5, help="AIZOO whole-frame score threshold (AIZOO default 0.5)"
    )
    parser.add_argument("--iou-match", type=float, default=0.5, help="IoU for a detection to match a face")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="AIZOO model file (default: via the store)")
    parser.add_argument("--face-model", type=Path, default=None, help="BlazeFace file (default: via the store)")
    args = parser.parse_args()
    names = DETECTORS[::-1] if args.compare else (args.detector,)
    with tempfile.TemporaryDirectory(prefix="wardsight-eval-") as tmp:
        store = ArtifactStore(Path(tmp), mirrors=(SHARED / "models",))
        aizoo = args.model or store.ensure(FACEMASK_AIZOO.artifact)
        needs_face = "two-stage" in names and args.face_model is None
        face = store.ensure(FACE_FULL_RANGE) if needs_face else (args.face_model or aizoo)
        results = {}
        for name in names:
            detect, describe = make_detector(name, aizoo, face, args.min_score, args.threads)
            results[name] = evaluate(args.labels, detect, describe, args.iou_match, args.threads)
    if args.compare:
        for name, r in results.items():
            print(summary_line(name, r))


if __name__ == "__main__":
    main()
