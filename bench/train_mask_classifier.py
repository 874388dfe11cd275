"""Train the mask head of ``accelerators/mask_classifier.py`` on mask-dev, cross-validated by image (run by hand).

For every labelled image the two-stage pipeline's face proposals are made (``TwoStageMaskDetector.proposals``:
BlazeFace on the frame and 2x2 tiles plus AIZOO's own faces) and, per proposal, both the two-stage call (AIZOO
on the crop, with the final box ``detect_all`` gives) and the head's features (MediaPipe's face landmark model
on the 1.5x square crop). A proposal matched to a labelled face (IoU >= 0.5, greedy, as ``bench/eval_masks.py``)
takes that face's class (worn incorrectly counts as no mask); an unmatched one is ``not_face``. Each labelled
box's crop, mirrored crop and a jittered box's crop are added to the training data (never to the test data).

Cross-validation: images are split into ``--folds`` groups (a fixed seed); the head is trained on the other
groups and calls the held-out group's proposals with the final boxes of the two-stage pipeline, so *found* is
the pipeline's and only the calls differ. The held-out calls of all folds are scored exactly as
``bench/eval_masks.py`` scores a detector (per band, stray no-mask calls included) beside the two-stage calls;
``head@T`` is the head with a no-mask call needing probability T (a mask call always needs ``--mask-threshold``).

``--write FILE`` trains on every image and writes the head (``.npz``) and prints its sha256: with the default
settings on mask-dev, the bytes ``accelerators.mask_classifier.MASK_HEAD`` pins (the training settles, so the
bytes do not depend on BLAS's thread count; a test rebuilds it). ``--cache FILE`` keeps the features between
runs; ``--folds 0`` skips the cross-validation (only builds). ``product@T`` is what the agent calls with the head:
``accelerators.mask_classifier.combine`` of head@T and the two-stage call (the head's calls, and the two-stage
"mask" where the head is unsure).

    .venv/bin/python bench/train_mask_classifier.py [--labels FILE] [--cache FILE] [--folds 5] [--l2 0.1]
        [--mask-threshold 0.5] [--no-mask-threshold 0.8] [--thresholds 0.6,0.7,0.8,0.9] [--write head.npz]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accelerators.facemask import FACEMASK_AIZOO  # noqa: E402
from accelerators.faces import TwoStageMaskDetector  # noqa: E402
from accelerators.mask_classifier import (  # noqa: E402
    CLASSES,
    FACE_LANDMARK,
    FEATURE_DIM,
    HeadWeights,
    LandmarkFeatures,
    combine,
    decide,
    probabilities,
    square_crop,
)
from accelerators.mediapipe_models import FACE_FULL_RANGE  # noqa: E402
from bench.eval_masks import SHARED, Outcome, image_outcomes, match, print_bands, print_confusions, read_labels  # noqa: E402
from firmware.apps.mask import MaskConfig  # noqa: E402
from wardsight.fetch import ArtifactStore  # noqa: E402

TARGET = {"with_mask": 0, "without_mask": 1, "mask_weared_incorrect": 1}
NOT_FACE = 2
SEED = 20
Box = tuple[float, float, float, float]


@dataclass
class Samples:
    """Every crop: its image index, whether it is a proposal (else a labelled box), final box, two-stage call,
    target class (0 mask, 1 no_mask, 2 not_face) and features."""

    image: np.ndarray
    proposal: np.ndarray
    boxes: np.ndarray
    baseline: np.ndarray
    target: np.ndarray
    x: np.ndarray
    names: list[str]

    def save(self, path: Path) -> None:
        np.savez(
            path,
            image=self.image,
            proposal=self.proposal,
            boxes=self.boxes,
            baseline=self.baseline,
            target=self.target,
            x=self.x,
            names=np.array(self.names),
        )

    @classmethod
    def load(cls, path: Path) -> Samples:
        with np.load(path, allow_pickle=False) as d:
            return cls(
                d["image"], d["proposal"], d["boxes"], d["baseline"], d["target"], d["x"], [str(n) for n in d["names"]]
            )


def jittered(box: Box, rng: np.random.Generator) -> Box:
    """The box shifted by up to 10% of its size and scaled by 0.85 to 1.2 (proposals are not labelled boxes)."""
    w, h = box[2] - box[0], box[3] - box[1]
    dx, dy = rng.uniform(-0.1, 0.1, 2) * (w, h)
    k = rng.uniform(0.85, 1.2)
    cx, cy = (box[0] + box[2]) / 2 + dx, (box[1] + box[3]) / 2 + dy
    return (cx - k * w / 2, cy - k * h / 2, cx + k * w / 2, cy + k * h / 2)


def crop_features(feats: LandmarkFeatures, rgb: np.ndarray, box: Box, flip: bool = False) -> np.ndarray:
    """The features of the crop around ``box`` (mirrored when ``flip``); NaN when there is no crop."""
    crop = square_crop(rgb, box)
    if crop is None:
        return np.full(FEATURE_DIM, np.nan, dtype=np.float32)
    return feats.features(np.ascontiguousarray(crop[:, ::-1]) if flip else crop)


def image_rows(
    two: TwoStageMaskDetector, feats: LandmarkFeatures, rgb: np.ndarray, faces: list, rng: np.random.Generator
) -> tuple[list[tuple[bool, Box, str, int, np.ndarray]], float]:
    """Rows (proposal?, box, baseline call, target, features) of one image, and seconds spent on features.

    Proposals first (final box and call as ``TwoStageMaskDetector.detect_all``), then per labelled face its
    box, the box mirrored and a jittered box (training data only)."""
    rows: list[tuple[bool, Box, str, int, np.ndarray]] = []
    spent = 0.0
    props = two.proposals(rgb)
    dets = []
    for box, _ in props:
        label, score, crop_box = two.classify(rgb, box)
        dets.append(((crop_box if label != "unknown" else box), label, score))
    matched = {di: fi for fi, di in match(faces, dets, 0.5).items()}
    for di, ((box, _), det) in enumerate(zip(props, dets, strict=True)):
        start = time.perf_counter()
        x = crop_features(feats, rgb, box)
        spent += time.perf_counter() - start
        target = TARGET[faces[matched[di]][1]] if di in matched else NOT_FACE
        rows.append((True, det[0], det[1], target, x))
    for box, label in faces:
        for b, flip in ((box, False), (box, True), (jittered(box, rng), False)):
            rows.append((False, b, "", TARGET[label], crop_features(feats, rgb, b, flip)))
    return rows, spent


def collect(labels: Path, aizoo: Path, face: Path, landmark: Path, threads: int) -> Samples:
    two = TwoStageMaskDetector(face, aizoo, num_threads=threads)
    feats = LandmarkFeatures(landmark, threads)
    truth = read_labels(labels)
    names = sorted(truth)
    rng = np.random.default_rng(SEED)
    cols: list[list] = [[] for _ in range(6)]
    spent, n_props = 0.0, 0
    for i, name in enumerate(names):
        bgr = cv2.imread(str(labels.parent / name))
        if bgr is None:
            raise SystemExit(f"cannot read {labels.parent / name}")
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        rows, s = image_rows(two, feats, rgb, truth[name], rng)
        spent += s
        for prop, box, base, target, x in rows:
            n_props += int(prop)
            for col, v in zip(cols, (i, prop, box, base, target, x), strict=True):
                col.append(v)
    print(f"features: {1000 * spent / max(n_props, 1):.1f} ms per crop ({threads} threads, {n_props} proposals)")
    return Samples(
        np.array(cols[0]),
        np.array(cols[1], dtype=bool),
        np.array(cols[2], dtype=np.float32),
        np.array(cols[3]),
        np.array(cols[4]),
        np.stack(cols[5]).astype(np.float32),
        names,
    )


def train(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 2000, lr: float = 0.05) -> HeadWeights:
    """Softmax regression on standardised features, classes weighted to equal total weight, L2, Adam with its step
    falling linearly to 0, so it settles at the (unique: the loss is convex) optimum. A fixed step did not settle
    in 600 steps, and the order of BLAS's sums (its thread count) then changed 35 of 417 proposals' top class."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-3
    xs = (x - mean) / scale
    k = len(CLASSES)
    onehot = np.eye(k, dtype=np.float64)[y]
    counts = np.maximum(np.bincount(y, minlength=k), 1)
    sw = (len(y) / (k * counts))[y]
    rng = np.random.default_rng(SEED)
    w = rng.normal(0, 0.01, (FEATURE_DIM, k))
    b = np.zeros(k)
    mw, vw, mb, vb = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    for t in range(1, steps + 1):
        z = xs @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) * sw[:, None] / sw.sum()
        gw = xs.T @ g + l2 * w
        gb = g.sum(axis=0)
        for m, v, gr, param in ((mw, vw, gw, w), (mb, vb, gb, b)):
            m *= 0.9
            m += 0.1 * gr
            v *= 0.999
            v += 0.001 * gr * gr
            step = lr * (1 - (t - 1) / steps)
            param -= step * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return HeadWeights(mean.astype(np.float32), scale.astype(np.float32), w.astype(np.float32), b.astype(np.float32))


def folds_of(n_images: int, folds: int) -> np.ndarray:
    order = np.random.default_rng(SEED).permutation(n_images)
    out = np.empty(n_images, dtype=np.int64)
    out[order] = np.arange(n_images) % folds
    return out


def cross_validate(s: Samples, folds: int, l2: float) -> np.ndarray:
    """Held-out probabilities for every proposal (rows of ``s`` that are not proposals stay zero)."""
    fold = folds_of(len(s.names), folds)[s.image]
    probs = np.zeros((len(s.target), len(CLASSES)), dtype=np.float32)
    ok = np.isfinite(s.x).all(axis=1)
    for f in range(folds):
        head = train(s.x[ok & (fold != f)], s.target[ok & (fold != f)], l2)
        test = ok & (fold == f) & s.proposal
        probs[test] = probabilities(head, s.x[test])
    return probs


def as_box(row: np.ndarray) -> Box:
    x1, y1, x2, y2 = (float(v) for v in row)
    return (x1, y1, x2, y2)


def outcomes(s: Samples, truth: dict, calls: Sequence[str], scores: Sequence[float]) -> list[Outcome]:
    """Outcomes over every image, as ``bench/eval_masks.py`` counts them, for calls on the proposal rows."""
    out: list[Outcome] = []
    rows = np.flatnonzero(s.proposal)
    for i, name in enumerate(s.names):
        mine = [int(r) for r in rows if s.image[r] == i]
        dets = [(as_box(s.boxes[r]), calls[r], float(scores[r])) for r in mine]
        out += image_outcomes(truth[name], dets, 0.5)
    return out


def _counted(call: tuple[str, float]) -> tuple[str, float]:
    """A call as the mask app counts it: below its ``min_call_score`` it is no call ("unknown")."""
    return call if call[1] >= MaskConfig().min_call_score else ("unknown", call[1])


def report(s: Samples, truth: dict, probs: np.ndarray, thresholds: Sequence[float], head: HeadWeights) -> None:
    n = len(s.target)
    results = {"two-stage": outcomes(s, truth, [str(c) for c in s.baseline], [0.0] * n)}
    for t in thresholds:
        h = HeadWeights(head.mean, head.scale, head.weights, head.bias, head.mask_threshold, t)
        decided = [decide(h, p) if s.proposal[r] else ("unknown", 0.0) for r, p in enumerate(probs)]
        results[f"head@{t:g}"] = outcomes(s, truth, [d[0] for d in decided], [d[1] for d in decided])
        # (the cache keeps the two-stage call, not its score: it calls only at mask_min_score or more, so that
        # bound stands in for the score, which decides the same under the app's cut, no higher than that bound)
        aizoo = TwoStageMaskDetector.__init__.__kwdefaults__["mask_min_score"]
        combined = [_counted(combine(d, (str(c), aizoo))) for d, c in zip(decided, s.baseline, strict=True)]
        results[f"product@{t:g}"] = outcomes(s, truth, [d[0] for d in combined], [d[1] for d in combined])
    print_bands(results)
    chosen = f"product@{head.no_mask_threshold:g}"
    print_confusions({k: v for k, v in results.items() if k in ("two-stage", chosen)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--labels", type=Path, default=SHARED / "data" / "mask-dev" / "labels.csv")
    parser.add_argument("--cache", type=Path, default=None, help="features file to reuse (written if missing)")
    parser.add_argument("--folds", type=int, default=5, help="0: no cross-validation (with --write: only build)")
    parser.add_argument("--l2", type=float, default=0.1)
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="least probability of a mask call")
    parser.add_argument("--no-mask-threshold", type=float, default=0.8, help="least probability of a no-mask call")
    parser.add_argument("--thresholds", default="0.6,0.7,0.8,0.9", help="no-mask thresholds to report")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", type=Path, default=None, help="train on every image and write the head here")
    args = parser.parse_args(argv)
    if not args.labels.is_file():
        raise SystemExit(f"no labels file at {args.labels} (give one with --labels FILE)")
    truth = read_labels(args.labels)
    if args.cache is not None and args.cache.is_file():
        samples = Samples.load(args.cache)
    else:
        with tempfile.TemporaryDirectory(prefix="wardsight-train-") as tmp:
            store = ArtifactStore(Path(tmp), mirrors=(SHARED / "models",))
            aizoo = store.ensure(FACEMASK_AIZOO.artifact)
            face, landmark = store.ensure_all([FACE_FULL_RANGE, FACE_LANDMARK])
            samples = collect(args.labels, aizoo, face, landmark, args.threads)
        if args.cache is not None:
            samples.save(args.cache)
    counts = np.bincount(samples.target[samples.proposal], minlength=3)
    print(
        f"{len(samples.names)} images, {int(samples.proposal.sum())} proposals (mask {counts[0]}, no mask "
        f"{counts[1]}, not a face {counts[2]}), {int((~samples.proposal).sum())} labelled crops"
    )
    probs = None
    if args.folds:
        start = time.perf_counter()
        probs = cross_validate(samples, args.folds, args.l2)
        print(f"{args.folds}-fold cross-validation by image: {time.perf_counter() - start:.1f} s")
    ok = np.isfinite(samples.x).all(axis=1)
    fitted = train(samples.x[ok], samples.target[ok], args.l2)
    head = HeadWeights(
        fitted.mean, fitted.scale, fitted.weights, fitted.bias, args.mask_threshold, args.no_mask_threshold
    )
    if probs is not None:
        report(samples, truth, probs, [float(t) for t in args.thresholds.split(",")], head)
    if args.write is not None:
        head.save(args.write)
        digest = hashlib.sha256(args.write.read_bytes()).hexdigest()
        print(f"wrote {args.write}: {args.write.stat().st_size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
