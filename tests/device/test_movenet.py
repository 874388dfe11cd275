"""The real MoveNet model on real photos, and the letterbox geometry for any aspect ratio."""

import numpy as np
import pytest

from accelerators import movenet
from accelerators.cpu import CpuPoseBackend, ModelLoadError
from tests.device.helpers import assert_refuses_bad_frames, read_rgb, truncated_model


def head_inside_box(person) -> bool:
    x, y, s = person.keypoint("nose")
    x1, y1, x2, y2 = person.box
    return s > 0.3 and x1 <= x <= x2 and y1 <= y <= y1 + 0.4 * (y2 - y1)


@pytest.mark.parametrize("photo", ["astronaut.png", "camera.png"])
def test_one_person_found_in_real_photo(backend, shared, photo):
    image = read_rgb(shared / "media" / photo)
    people = [p for p in backend.detect(image) if p.score >= 0.25]
    assert len(people) == 1
    person = people[0]
    assert person.keypoints.shape == (17, 3)
    assert head_inside_box(person)
    # Shoulders lie below the nose.
    assert person.keypoint("left_shoulder")[1] > person.keypoint("nose")[1]


def test_astronaut_nose_is_on_the_face(backend, shared):
    # Eileen Collins' face occupies roughly x 160-280, y 40-200 in this 512x512 photo.
    person = backend.detect(read_rgb(shared / "media" / "astronaut.png"))[0]
    x, y, _ = person.keypoint("nose")
    assert 160 <= x <= 280 and 40 <= y <= 200


@pytest.mark.parametrize(
    "canvas_wh, offset", [((1200, 512), (688, 0)), ((512, 1100), (0, 588)), ((640, 900), (128, 388))]
)
def test_coordinates_map_back_for_any_aspect_ratio(backend, shared, canvas_wh, offset):
    photo = read_rgb(shared / "media" / "astronaut.png")
    alone = backend.detect(photo)[0]
    w, h = canvas_wh
    canvas = np.zeros((h, w, 3), np.uint8)
    ox, oy = offset
    canvas[oy : oy + 512, ox : ox + 512] = photo
    placed = max(backend.detect(canvas), key=lambda p: p.score)
    nose_alone = np.array(alone.keypoint("nose")[:2]) + offset
    nose_placed = np.array(placed.keypoint("nose")[:2])
    # The model sees the photo at a different scale, so allow a small tolerance (pixels of the photo).
    assert np.linalg.norm(nose_alone - nose_placed) < 10


def test_decoder_on_a_constructed_output():
    box = movenet.Letterbox.for_frame(640, 480, 256)
    assert (box.in_w, box.in_h) == (256, 192)
    raw = np.zeros((6, 56), np.float32)
    raw[0, :51] = np.tile([0.5, 0.25, 0.9], 17)  # every keypoint at y=0.5, x=0.25 of the tensor
    raw[0, 51:56] = [0.1, 0.1, 0.9, 0.5, 0.8]
    raw[1, 55] = 0.05  # under the threshold
    people = movenet.decode(raw, box, min_score=0.2)
    assert len(people) == 1
    p = people[0]
    # tensor x 0.25 * 256 = 64 px -> / scale 0.4 = 160 px; y 0.5 * 192 = 96 -> 240 px
    assert p.keypoint("nose") == pytest.approx((160.0, 240.0, 0.9), abs=1e-3)
    assert p.box == pytest.approx((64.0, 48.0, 320.0, 432.0), abs=1e-3)
    with pytest.raises(ValueError):
        movenet.decode(np.zeros((5, 56), np.float32), box)


def test_truncated_model_file_is_a_clear_error(movenet_path, tmp_path):
    with pytest.raises(ModelLoadError, match="cannot load model"):
        CpuPoseBackend(truncated_model(movenet_path, tmp_path))


def test_bad_frame_is_refused(backend):
    assert_refuses_bad_frames(backend)


def test_decoder_with_padding_on_both_axes():
    # 1200x512 -> scale 256/1200; content 256x109 in a 256x128 tensor: padding below the image.
    box = movenet.Letterbox.for_frame(1200, 512, 256)
    assert (box.in_w, box.in_h) == (256, 128) and box.scaled_size == (256, 109)
    raw = np.zeros((6, 56), np.float32)
    raw[0, :51] = np.tile([0.5, 0.75, 0.9], 17)
    raw[0, 51:56] = [0.25, 0.5, 0.75, 1.0, 0.9]
    (p,) = movenet.decode(raw, box)
    scale = 256 / 1200
    assert p.keypoint("nose")[:2] == pytest.approx((0.75 * 256 / scale, 0.5 * 128 / scale), abs=1e-2)
    assert p.box == pytest.approx((0.5 * 256 / scale, 0.25 * 128 / scale, 1200, 0.75 * 128 / scale), abs=1e-2)
    # a tall frame: padding to the right
    tall = movenet.Letterbox.for_frame(300, 1000, 256)
    assert (tall.in_w, tall.in_h) == (96, 256)
    (q,) = movenet.decode(raw, tall)
    assert q.keypoint("nose")[0] == pytest.approx(min(0.75 * 96 / (256 / 1000), 299), abs=1e-2)
