"""How well the AIZOO face-mask detector finds and classifies labelled faces (run by hand, never in CI).

Reads a labels.csv (image,xmin,ymin,xmax,ymax,label; one face per row, images beside it), runs the CPU
detector on every image, matches detections to labelled faces one-to-one (greedy by IoU, IoU >= 0.5) and
prints per-class recall (found; found and correctly classified) and the precision of the calls.

    /tmp/venv/bin/python bench/eval_masks.py [--labels PATH] [--min-score S] [--iou-match T] [--model PATH]

By default the model comes through the artifact store (verified by sha256) from ../shared/models.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from accelerators.facemask import FACEMASK_AIZOO, CpuFaceMaskDetector, Face
from wardsight.fetch import ArtifactStore

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
EXPECTED_CALL = {"with_mask": "mask", "without_mask": "no_mask", "mask_weared_incorrect": "no_mask"}

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(faces: list[tuple[Box, str]], dets: list[Face], threshold: float) -> dict[int, int]:
    """Greedy one-to-one matching, highest IoU first: {face index: detection index}."""
    pairs = sorted(
        ((iou(fb, d.box), fi, di) for fi, (fb, _) in enumerate(faces) for di, d in enumerate(dets)),
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


def evaluate(labels: Path, model: Path, min_score: float, iou_match: float, threads: int) -> None:
    detector = CpuFaceMaskDetector(model, num_threads=threads, min_score=min_score)
    truth = read_labels(labels)
    total: Counter[str] = Counter()
    found: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    calls: Counter[str] = Counter()  # detections by label
    right_calls: Counter[str] = Counter()  # detections matched to a face whose class agrees with the call
    seconds = 0.0
    for image, faces in sorted(truth.items()):
        bgr = cv2.imread(str(labels.parent / image))
        if bgr is None:
            raise SystemExit(f"cannot read {labels.parent / image}")
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        start = time.perf_counter()
        dets = detector.detect(rgb)
        seconds += time.perf_counter() - start
        calls.update(d.label for d in dets)
        matched = match(faces, dets, iou_match)
        for fi, (_, label) in enumerate(faces):
            total[label] += 1
            if fi in matched:
                found[label] += 1
                call = dets[matched[fi]].label
                if call == EXPECTED_CALL[label]:
                    correct[label] += 1
                    right_calls[call] += 1

    print(f"labels {labels}: {len(truth)} images, {sum(total.values())} faces; model {FACEMASK_AIZOO.name}")
    print(f"min_score {min_score}, NMS IoU {detector.iou}, match IoU >= {iou_match}")
    print(f"mean detect time {1000 * seconds / max(len(truth), 1):.1f} ms per image ({threads} threads)")
    print()
    print(f"{'class':<24}{'found':>22}{'found + correctly classified':>34}")
    for cls in CLASSES:
        print(f"{cls:<24}{pct(found[cls], total[cls]):>22}{pct(correct[cls], total[cls]):>34}")
    unmasked = ("without_mask", "mask_weared_incorrect")
    print(
        f"{'no mask (both classes)':<24}{pct(sum(found[c] for c in unmasked), sum(total[c] for c in unmasked)):>22}"
        f"{pct(sum(correct[c] for c in unmasked), sum(total[c] for c in unmasked)):>34}"
    )
    print()
    print(
        f"precision of no_mask calls (match a without_mask / mask_weared_incorrect face): "
        f"{pct(right_calls['no_mask'], calls['no_mask'])}"
    )
    print(f"precision of mask calls (match a with_mask face): {pct(right_calls['mask'], calls['mask'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=SHARED / "data" / "mask-dev" / "labels.csv")
    parser.add_argument("--min-score", type=float, default=0.5, help="detector score threshold (AIZOO default 0.5)")
    parser.add_argument("--iou-match", type=float, default=0.5, help="IoU for a detection to match a face")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="model file (default: via the store from shared/)")
    args = parser.parse_args()
    if args.model is not None:
        evaluate(args.labels, args.model, args.min_score, args.iou_match, args.threads)
        return
    with tempfile.TemporaryDirectory(prefix="wardsight-eval-") as tmp:
        model = ArtifactStore(Path(tmp), mirrors=(SHARED / "models",)).ensure(FACEMASK_AIZOO.artifact)
        evaluate(args.labels, model, args.min_score, args.iou_match, args.threads)


if __name__ == "__main__":
    main()
