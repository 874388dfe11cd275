"""Multi-person tracking (ByteTrack-style) with keypoint smoothing. Pure: people and a clock in, tracks out.

Each frame, tracks predict their box with a constant-velocity model; detections at or above
``high_score`` are matched to tracks first by IoU, then the remaining tracks get a second chance with
the low-score detections (``low_score`` to ``high_score``), which is what keeps an id through partial
occlusion. A third stage serves falls: a person's box changes from tall to wide in a fraction of a
second, so IoU with the prediction collapses and the detector is often unsure of a person lying on the
floor. Tracks still unmatched may take a remaining detection of any score from ``low_score`` whose
centre lies within ``reacquire_heights`` of the track's own height from its last centre. Unmatched
high-score detections start new tracks; a track unseen for ``max_age`` seconds ends. Matching is
greedy (best pair first), which for the handful of people in a room gives the same result as optimal
assignment. Keypoints are smoothed with an exponential moving average whose
weight follows each keypoint's confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accelerators.types import Person

Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class TrackedPerson:
    track_id: int
    person: Person  # box and keypoints smoothed; score from this frame's detection
    age: float  # seconds since the track started
    hits: int  # frames in which it was detected


def iou_matrix(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """IoU of every box in ``a`` (N,4) with every box in ``b`` (M,4), boxes as x1, y1, x2, y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def greedy_match(iou: npt.NDArray[np.float64], threshold: float) -> list[tuple[int, int]]:
    """Pairs (row, col) by descending IoU, each row and column used once, IoU >= threshold."""
    pairs: list[tuple[int, int]] = []
    if iou.size == 0:
        return pairs
    used_r: set[int] = set()
    used_c: set[int] = set()
    order = np.argsort(-iou, axis=None)
    for flat in order:
        r, c = divmod(int(flat), iou.shape[1])
        if iou[r, c] < threshold:
            break
        if r in used_r or c in used_c:
            continue
        pairs.append((r, c))
        used_r.add(r)
        used_c.add(c)
    return pairs


@dataclass
class _Track:
    track_id: int
    box: npt.NDArray[np.float64]
    velocity: npt.NDArray[np.float64]  # box units per second
    keypoints: npt.NDArray[np.float32]
    score: float
    started: float
    last_seen: float
    hits: int = 1

    def predicted(self, time: float) -> npt.NDArray[np.float64]:
        dt = min(time - self.last_seen, 1.0)
        return self.box + self.velocity * dt


class Tracker:
    def __init__(
        self,
        *,
        high_score: float = 0.35,
        low_score: float = 0.15,
        match_iou: float = 0.3,
        max_age: float = 3.0,  # seconds a track survives without a detection
        smoothing: float = 0.5,  # 0 = no smoothing, towards 1 = heavier
        reacquire_heights: float = 0.8,  # third-stage gate, in track heights from its last centre
    ) -> None:
        self.high_score, self.low_score, self.match_iou = high_score, low_score, match_iou
        self.max_age, self.smoothing, self.reacquire_heights = max_age, smoothing, reacquire_heights
        self._tracks: list[_Track] = []
        self._next_id = 1

    def _associate(
        self, tracks: list[_Track], people: list[Person], time: float
    ) -> tuple[list[tuple[_Track, Person]], list[_Track], list[Person]]:
        boxes_t = np.array([t.predicted(time) for t in tracks]).reshape(-1, 4)
        boxes_p = np.array([p.box for p in people], dtype=np.float64).reshape(-1, 4)
        pairs = greedy_match(iou_matrix(boxes_t, boxes_p), self.match_iou)
        matched_t = {r for r, _ in pairs}
        matched_p = {c for _, c in pairs}
        return (
            [(tracks[r], people[c]) for r, c in pairs],
            [t for i, t in enumerate(tracks) if i not in matched_t],
            [p for i, p in enumerate(people) if i not in matched_p],
        )

    def _reacquire(
        self, tracks: list[_Track], fresh: list[Person], low: list[Person]
    ) -> tuple[list[tuple[_Track, Person]], list[Person]]:
        """Third stage: match by centre distance, gated by each track's height; returns pairs, unused fresh."""
        candidates = fresh + low
        if not tracks or not candidates:
            return [], fresh
        centres_t = np.array([[(t.box[0] + t.box[2]) / 2, (t.box[1] + t.box[3]) / 2] for t in tracks])
        heights = np.array([max(t.box[3] - t.box[1], 1.0) for t in tracks])
        boxes = np.array([p.box for p in candidates], dtype=np.float64)
        centres_p = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], axis=1)
        dist = np.linalg.norm(centres_t[:, None, :] - centres_p[None, :, :], axis=2) / heights[:, None]
        # Closeness as a score in (0, 1] so greedy_match picks the nearest pairs first.
        closeness = np.where(dist <= self.reacquire_heights, 1.0 / (1.0 + dist), 0.0)
        pairs = greedy_match(closeness, 1.0 / (1.0 + self.reacquire_heights))
        used = {c for _, c in pairs}
        remaining_fresh = [p for i, p in enumerate(fresh) if i not in used]
        return [(tracks[r], candidates[c]) for r, c in pairs], remaining_fresh

    def _absorb(self, track: _Track, person: Person, time: float) -> None:
        box = np.asarray(person.box, dtype=np.float64)
        dt = time - track.last_seen
        if dt > 0:
            track.velocity = 0.5 * track.velocity + 0.5 * (box - track.box) / dt
        track.box = box
        alpha = (1.0 - self.smoothing) + self.smoothing * np.clip(person.keypoints[:, 2:3], 0.0, 1.0)
        track.keypoints = (alpha * person.keypoints + (1 - alpha) * track.keypoints).astype(np.float32)
        track.keypoints[:, 2] = person.keypoints[:, 2]
        track.score, track.last_seen = person.score, time
        track.hits += 1

    def update(self, time: float, people: Sequence[Person]) -> list[TrackedPerson]:
        """Advance to ``time`` with this frame's detections; returns the tracks detected in this frame."""
        high = [p for p in people if p.score >= self.high_score]
        low = [p for p in people if self.low_score <= p.score < self.high_score]
        pairs, unmatched, fresh = self._associate(self._tracks, high, time)
        pairs2, unmatched, low_left = self._associate(unmatched, low, time)
        pairs3, fresh = self._reacquire(unmatched, fresh, low_left)
        seen: list[_Track] = []
        for track, person in pairs + pairs2 + pairs3:
            self._absorb(track, person, time)
            seen.append(track)
        for person in fresh:
            track = _Track(
                self._next_id,
                np.asarray(person.box, dtype=np.float64),
                np.zeros(4),
                person.keypoints.copy(),
                person.score,
                time,
                time,
            )
            self._next_id += 1
            self._tracks.append(track)
            seen.append(track)
        self._tracks = [t for t in self._tracks if time - t.last_seen <= self.max_age]
        out = []
        for t in sorted(seen, key=lambda t: t.track_id):
            box: Box = (float(t.box[0]), float(t.box[1]), float(t.box[2]), float(t.box[3]))
            out.append(TrackedPerson(t.track_id, Person(box, t.score, t.keypoints.copy()), time - t.started, t.hits))
        return out

    @property
    def active(self) -> int:
        return len(self._tracks)
