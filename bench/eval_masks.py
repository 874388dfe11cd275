"""How well the face-mask detectors find and classify labelled faces, by face size (run by hand, never in CI).

Reads a labels file (CSV: image,xmin,ymin,xmax,ymax,label; one face per row, images beside it), runs a detector
on every image and matches detections to labelled faces one-to-one (greedy by IoU, IoU >= 0.5). Every figure
is given by face-size band, a face's size being the shorter side of its labelled box in pixels: "<24",
"24-48", "48-96", ">=96" (each from its lower bound, inclusive, to its upper bound, exclusive) and ">=32"
(overlapping the others: the size the product is optimised for), and over "all" faces.

Per band, a confusion matrix (labelled class x call: mask / no_mask / unknown / not found) and five figures:
- faces: labelled faces in the band;
- found: fraction of them matched by a detection, whatever its call ("unknown" included);
- correct: fraction of the found with the right call ("mask" for with_mask; "no_mask" for without_mask and
  mask_weared_incorrect); "unknown" is never right;
- no_mask_precision: fraction of the "no_mask" calls in the band that are right. A call that matches a
  labelled face falls in that face's band; a call that matches none (a stray detection, always wrong) falls
  in the band of its own box's shorter side;
- unknown: fraction of the found whose call is "unknown" (a face the classifier could not judge).
A fraction whose denominator is zero (no faces, nothing found, no "no_mask" call in the band) is null in
``--json`` and "n/a" in the text report: there is nothing to measure, which is not the same as 0 or 1.

Detectors: ``two-stage`` (default: BlazeFace full range on the frame and 2x2 tiles plus AIZOO's own faces,
then AIZOO on each face crop, ``accelerators.faces``) and ``aizoo`` (the AIZOO SSD alone, at its defaults:
the floor). ``--compare`` runs both and prints them side by side. ``--json`` prints only one JSON object,
``{"bands": {"<24": B, "24-48": B, "48-96": B, ">=96": B, ">=32": B}, "all": B}`` with each B
``{"faces": n, "found": f, "correct": f, "no_mask_precision": f, "unknown": f}``, for ``--detector``.

    .venv/bin/python bench/eval_masks.py [--detector two-stage|aizoo] [--compare | --json] [--labels FILE]
        [--min-score S] [--iou-match T] [--model PATH] [--face-model PATH]

By default the models come through the artifact store (verified by sha256): AIZOO from ../shared/models,
BlazeFace from the mediapipe wheel on PyPI; the labels default to ../shared/data/mask-dev/labels.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from accelerators.blaze import box_iou
from accelerators.facemask import FACEMASK_AIZOO, CpuFaceMaskDetector
from accelerators.faces import TwoStageMaskDetector
from accelerators.mediapipe_models import FACE_FULL_RANGE
from wardsight.fetch import ArtifactStore

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLASSES = ("with_mask", "without_mask", "mask_weared_incorrect")
UNMASKED = frozenset({"without_mask", "mask_weared_incorrect"})
EXPECTED_CALL = {"with_mask": "mask", "without_mask": "no_mask", "mask_weared_incorrect": "no_mask"}
NOT_FOUND = "not found"
CALLS = ("mask", "no_mask", "unknown", NOT_FOUND)  # the confusion matrix's columns
STRAY = "(no labelled face)"  # the confusion matrix's row for detections that match no labelled face
# Face-size bands in pixels (shorter side of the labelled box): [lower, upper).
BANDS: dict[str, tuple[float, float]] = {
    "<24": (0.0, 24.0),
    "24-48": (24.0, 48.0),
    "48-96": (48.0, 96.0),
    ">=96": (96.0, math.inf),
    ">=32": (32.0, math.inf),
}
FIGURES = ("faces", "found", "correct", "no_mask_precision", "unknown")

DETECTORS = ("two-stage", "aizoo")

Box = tuple[float, float, float, float]
Detection = tuple[Box, str, float]  # box, call ("mask" | "no_mask" | "unknown"), score
Detect = Callable[[np.ndarray], list[Detection]]
Figures = dict[str, Any]  # the B: faces (int), then four fractions (float or None)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One labelled face and what the detector called it, or one stray detection (``label`` None).

    ``size`` is the shorter side in pixels of the labelled box, or of the detection's box for a stray one;
    ``call`` is "mask", "no_mask", "unknown" or "not found" (a labelled face no detection matched)."""

    size: float
    label: str | None
    call: str


def box_size(box: Box) -> float:
    """A face's size: the shorter side of its box, in pixels."""
    return min(box[2] - box[0], box[3] - box[1])


def in_band(size: float, band: str) -> bool:
    low, high = BANDS[band]
    return low <= size < high


def match(faces: Sequence[tuple[Box, str]], dets: Sequence[Detection], threshold: float) -> dict[int, int]:
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


def image_outcomes(faces: Sequence[tuple[Box, str]], dets: Sequence[Detection], threshold: float) -> list[Outcome]:
    """One image: an outcome per labelled face (matched call or "not found"), then one per stray detection."""
    matched = match(faces, dets, threshold)
    out = [
        Outcome(box_size(box), label, dets[matched[fi]][1] if fi in matched else NOT_FOUND)
        for fi, (box, label) in enumerate(faces)
    ]
    used = set(matched.values())
    out += [Outcome(box_size(d[0]), None, d[1]) for di, d in enumerate(dets) if di not in used]
    return out


def _ratio(n: int, d: int) -> float | None:
    return n / d if d else None


def figure_counts(outcomes: Iterable[Outcome]) -> dict[str, tuple[int, int]]:
    """Numerator and denominator of each fraction of :func:`figures` (and faces as (n, n))."""
    items = list(outcomes)
    labelled = [o for o in items if o.label is not None]
    found = [o for o in labelled if o.call != NOT_FOUND]
    correct = sum(1 for o in found if o.label is not None and o.call == EXPECTED_CALL[o.label])
    no_mask_calls = [o for o in items if o.call == "no_mask"]
    right_no_mask = sum(1 for o in no_mask_calls if o.label in UNMASKED)
    return {
        "faces": (len(labelled), len(labelled)),
        "found": (len(found), len(labelled)),
        "correct": (correct, len(found)),
        "no_mask_precision": (right_no_mask, len(no_mask_calls)),
        "unknown": (sum(1 for o in found if o.call == "unknown"), len(found)),
    }


def figures(outcomes: Iterable[Outcome]) -> Figures:
    """The issue's B over these outcomes (all of one band): see the module's docstring for each figure."""
    counts = figure_counts(outcomes)
    out: Figures = {"faces": counts["faces"][0]}
    out.update({name: _ratio(*counts[name]) for name in FIGURES[1:]})
    return out


def band_report(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    """``{"bands": {band: B, ...}, "all": B}``, B as :func:`figures` gives it."""
    items = list(outcomes)
    return {
        "bands": {band: figures(o for o in items if in_band(o.size, band)) for band in BANDS},
        "all": figures(items),
    }


def confusion(outcomes: Iterable[Outcome]) -> dict[str, Counter[str]]:
    """Labelled class (and STRAY for detections matching no face) x call: counts."""
    table: dict[str, Counter[str]] = {row: Counter() for row in (*CLASSES, STRAY)}
    for o in outcomes:
        table[o.label if o.label is not None else STRAY][o.call] += 1
    return table


def rounded(report: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    """The report with its fractions rounded for printing (None stays None)."""

    def one(b: Figures) -> Figures:
        return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in b.items()}

    return {"bands": {k: one(v) for k, v in report["bands"].items()}, "all": one(report["all"])}


def read_labels(path: Path) -> dict[str, list[tuple[Box, str]]]:
    by_image: dict[str, list[tuple[Box, str]]] = defaultdict(list)
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            box = (float(row["xmin"]), float(row["ymin"]), float(row["xmax"]), float(row["ymax"]))
            by_image[row["image"]].append((box, row["label"]))
    return dict(by_image)


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


def run(labels: Path, detect: Detect, iou_match: float) -> tuple[list[Outcome], float]:
    """Every outcome over the labelled images, and the mean detect time per image in milliseconds."""
    outcomes: list[Outcome] = []
    seconds = 0.0
    truth = read_labels(labels)
    for image, faces in sorted(truth.items()):
        bgr = cv2.imread(str(labels.parent / image))
        if bgr is None:
            raise SystemExit(f"cannot read {labels.parent / image}")
        rgb = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        start = time.perf_counter()
        dets = detect(rgb)
        seconds += time.perf_counter() - start
        outcomes += image_outcomes(faces, dets, iou_match)
    return outcomes, 1000 * seconds / max(len(truth), 1)


def _cell(n: int, d: int) -> str:
    return f"{100.0 * n / d:5.1f}% ({n}/{d})" if d else "n/a"


def print_bands(results: dict[str, list[Outcome]]) -> None:
    """Per band, one line of figures per detector (fractions with their counts)."""
    head = ("faces", "found", "correct", "no-mask precision", "unknown")
    print(f"{'band':<7}{'detector':<11}{head[0]:>6}" + "".join(f"{h:>21}" for h in head[1:]))
    for band in (*BANDS, "all"):
        for i, (name, outcomes) in enumerate(results.items()):
            chosen = outcomes if band == "all" else [o for o in outcomes if in_band(o.size, band)]
            counts = figure_counts(chosen)
            cells = "".join(f"{_cell(*counts[f]):>21}" for f in FIGURES[1:])
            print(f"{band if i == 0 else '':<7}{name:<11}{counts['faces'][0]:>6}{cells}")
    print()


def print_confusions(results: dict[str, list[Outcome]]) -> None:
    """Per band and detector, the confusion matrix: labelled class x call."""
    for band in (*BANDS, "all"):
        for name, outcomes in results.items():
            chosen = outcomes if band == "all" else [o for o in outcomes if in_band(o.size, band)]
            print(f"{'all faces' if band == 'all' else band + ' px'}, {name}: labelled class x call")
            print(f"  {'':<24}" + "".join(f"{c:>11}" for c in CALLS))
            for row, counts in confusion(chosen).items():
                print(
                    f"  {row:<24}"
                    + "".join(f"{counts[c] if row != STRAY or c != NOT_FOUND else '-':>11}" for c in CALLS)
                )
        print()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--detector", choices=DETECTORS, default="two-stage")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--compare", action="store_true", help="run both detectors and print them side by side")
    mode.add_argument("--json", action="store_true", help="print only --detector's figures, as one JSON object")
    parser.add_argument("--labels", type=Path, default=SHARED / "data" / "mask-dev" / "labels.csv")
    parser.add_argument(
        "--min-score", type=float, default=0.5, help="AIZOO whole-frame score threshold (AIZOO default 0.5)"
    )
    parser.add_argument("--iou-match", type=float, default=0.5, help="IoU for a detection to match a face")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", type=Path, default=None, help="AIZOO model file (default: via the store)")
    parser.add_argument("--face-model", type=Path, default=None, help="BlazeFace file (default: via the store)")
    args = parser.parse_args(argv)
    if not args.labels.is_file():
        raise SystemExit(f"no labels file at {args.labels} (give one with --labels FILE)")
    names = DETECTORS[::-1] if args.compare else (args.detector,)
    results: dict[str, list[Outcome]] = {}
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wardsight-eval-") as tmp:
        store = ArtifactStore(Path(tmp), mirrors=(SHARED / "models",))
        aizoo = args.model or store.ensure(FACEMASK_AIZOO.artifact)
        needs_face = "two-stage" in names and args.face_model is None
        face = store.ensure(FACE_FULL_RANGE) if needs_face else (args.face_model or aizoo)
        for name in names:
            detect, describe = make_detector(name, aizoo, face, args.min_score, args.threads)
            results[name], ms = run(args.labels, detect, args.iou_match)
            lines.append(f"{describe}\n  mean detect time {ms:.1f} ms per image ({args.threads} threads)")
    if args.json:
        json.dump(rounded(band_report(results[args.detector])), sys.stdout)
        print()
        return
    faces = sum(1 for o in next(iter(results.values())) if o.label is not None)
    print(
        f"labels {args.labels}: {faces} faces; a face is found when a detection matches it at IoU >= {args.iou_match}"
    )
    print("\n".join(lines))
    print()
    print_bands(results)
    print_confusions(results)


if __name__ == "__main__":
    main()
