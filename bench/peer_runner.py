"""Runs the peer, neura-fall-detection 0.1.0 (NFDModel, default settings), over clips; prints JSON.

Executed by bench/pipeline.py inside a separate virtual environment (the peer pins other versions of
LiteRT and OpenCV than WardSight), so it imports nothing from WardSight. Decoding the video is not
timed, as on our side: only ``NFDModel.process`` per frame.
Usage: python peer_runner.py THREADS CLIP [CLIP ...]
"""

import json
import sys
import time

import cv2
from neura_fall_detection import NFDModel


def main() -> None:
    threads = int(sys.argv[1])
    out = {}
    for clip in sys.argv[2:]:
        model = NFDModel(pose_threads=threads)
        cap = cv2.VideoCapture(clip)
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        frames, seconds, falls = 0, 0.0, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            t0 = time.perf_counter()
            result = model.process(frame, timestamp=frames / fps)
            seconds += time.perf_counter() - t0
            falls += len(result.new_fall_events)
            frames += 1
        out[clip] = {"frames": frames, "seconds": seconds, "fall_events": falls}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
