"""bench/eval_masks.py's figures by face-size band, on small synthetic faces with exact expected numbers."""

import json

import pytest

from bench.eval_masks import (
    BANDS,
    NOT_FOUND,
    STRAY,
    Outcome,
    band_report,
    box_size,
    confusion,
    figures,
    image_outcomes,
    in_band,
    rounded,
)


def sq(x, y, side, tall=None):
    """A box at (x, y), ``side`` wide and ``tall`` (default ``side``) high."""
    return (float(x), float(y), float(x + side), float(y + (side if tall is None else tall)))


def test_a_face_size_is_the_shorter_side_of_its_box():
    assert box_size(sq(0, 0, 30, 50)) == 30.0
    assert box_size(sq(10, 10, 60, 40)) == 40.0


@pytest.mark.parametrize(
    ("size", "bands"),
    [
        (0.0, {"<24"}),
        (23.9, {"<24"}),
        (24.0, {"24-48"}),
        (31.9, {"24-48"}),
        (32.0, {"24-48", ">=32"}),
        (48.0, {"48-96", ">=32"}),
        (95.9, {"48-96", ">=32"}),
        (96.0, {">=96", ">=32"}),
        (400.0, {">=96", ">=32"}),
    ],
)
def test_bands_include_their_lower_bound_and_exclude_their_upper_one(size, bands):
    assert {b for b in BANDS if in_band(size, b)} == bands
    assert list(BANDS) == ["<24", "24-48", "48-96", ">=96", ">=32"]


def test_image_outcomes_match_one_to_one_and_keep_strays_with_their_own_size():
    faces = [(sq(0, 0, 40), "with_mask"), (sq(100, 0, 20), "without_mask"), (sq(200, 0, 60), "with_mask")]
    dets = [
        (sq(1, 1, 40), "mask", 0.9),  # the first face
        (sq(2, 0, 40), "no_mask", 0.8),  # overlaps the first face too, but it is taken: a stray
        (sq(100, 0, 20), "unknown", 0.0),  # the second face, no call
        (sq(300, 300, 10, 30), "no_mask", 0.7),  # nowhere near a face: a stray of size 10
    ]
    out = image_outcomes(faces, dets, 0.5)
    assert out == [
        Outcome(40.0, "with_mask", "mask"),
        Outcome(20.0, "without_mask", "unknown"),
        Outcome(60.0, "with_mask", NOT_FOUND),
        Outcome(40.0, None, "no_mask"),
        Outcome(10.0, None, "no_mask"),
    ]


def test_figures_exact():
    outcomes = [
        Outcome(40, "with_mask", "mask"),  # found, right
        Outcome(40, "with_mask", "no_mask"),  # found, wrong; a wrong no-mask call
        Outcome(40, "without_mask", "no_mask"),  # found, right; a right no-mask call
        Outcome(40, "mask_weared_incorrect", "no_mask"),  # worn incorrectly counts as no mask: right
        Outcome(40, "mask_weared_incorrect", "mask"),  # found, wrong
        Outcome(40, "without_mask", "unknown"),  # found, unknown: never right
        Outcome(40, "with_mask", NOT_FOUND),
        Outcome(40, "without_mask", NOT_FOUND),
        Outcome(40, None, "no_mask"),  # a stray no-mask call: wrong, counts against precision only
        Outcome(40, None, "mask"),  # a stray mask call: no figure of B uses it
    ]
    assert figures(outcomes) == {
        "faces": 8,
        "found": 6 / 8,
        "correct": 3 / 6,
        "no_mask_precision": 2 / 4,
        "unknown": 1 / 6,
    }


def test_undefined_fractions_are_none_not_zero():
    assert figures([]) == {"faces": 0, "found": None, "correct": None, "no_mask_precision": None, "unknown": None}
    # faces but none found; no no-mask call at all
    assert figures([Outcome(50, "with_mask", NOT_FOUND)]) == {
        "faces": 1,
        "found": 0.0,
        "correct": None,
        "no_mask_precision": None,
        "unknown": None,
    }
    # only a stray no-mask call: precision 0, everything about faces undefined
    assert figures([Outcome(50, None, "no_mask")])["no_mask_precision"] == 0.0


def test_band_report_places_each_outcome_in_its_bands():
    outcomes = [
        Outcome(10, "without_mask", "no_mask"),  # <24
        Outcome(20, "with_mask", NOT_FOUND),  # <24
        Outcome(30, "with_mask", "mask"),  # 24-48
        Outcome(40, "with_mask", "unknown"),  # 24-48, >=32
        Outcome(50, "with_mask", "no_mask"),  # 48-96, >=32
        Outcome(120, "mask_weared_incorrect", "no_mask"),  # >=96, >=32
        Outcome(12, None, "no_mask"),  # a stray in <24
    ]
    report = band_report(outcomes)
    assert list(report) == ["bands", "all"] and list(report["bands"]) == list(BANDS)
    b = report["bands"]
    assert b["<24"] == {"faces": 2, "found": 0.5, "correct": 1.0, "no_mask_precision": 0.5, "unknown": 0.0}
    assert b["24-48"] == {"faces": 2, "found": 1.0, "correct": 0.5, "no_mask_precision": None, "unknown": 0.5}
    assert b["48-96"] == {"faces": 1, "found": 1.0, "correct": 0.0, "no_mask_precision": 0.0, "unknown": 0.0}
    assert b[">=96"] == {"faces": 1, "found": 1.0, "correct": 1.0, "no_mask_precision": 1.0, "unknown": 0.0}
    assert b[">=32"] == {"faces": 3, "found": 1.0, "correct": 1 / 3, "no_mask_precision": 0.5, "unknown": 1 / 3}
    assert report["all"] == {
        "faces": 6,
        "found": 5 / 6,
        "correct": 3 / 5,
        "no_mask_precision": 2 / 4,
        "unknown": 1 / 5,
    }


def test_the_json_shape_is_the_issues():
    report = rounded(band_report([Outcome(40, "with_mask", "mask"), Outcome(40, "without_mask", "mask")]))
    parsed = json.loads(json.dumps(report))
    assert set(parsed) == {"bands", "all"}
    assert set(parsed["bands"]) == {"<24", "24-48", "48-96", ">=96", ">=32"}
    keys = {"faces", "found", "correct", "no_mask_precision", "unknown"}
    assert all(set(b) == keys for b in [*parsed["bands"].values(), parsed["all"]])
    assert parsed["all"] == {"faces": 2, "found": 1.0, "correct": 0.5, "no_mask_precision": None, "unknown": 0.0}
    assert rounded({"bands": {}, "all": {"faces": 3, "found": 2 / 3}})["all"] == {"faces": 3, "found": 0.6667}


def test_confusion_rows_are_labelled_classes_and_strays():
    table = confusion(
        [
            Outcome(40, "with_mask", "mask"),
            Outcome(40, "with_mask", "mask"),
            Outcome(40, "with_mask", NOT_FOUND),
            Outcome(40, "without_mask", "unknown"),
            Outcome(40, None, "no_mask"),
        ]
    )
    assert list(table) == ["with_mask", "without_mask", "mask_weared_incorrect", STRAY]
    assert table["with_mask"] == {"mask": 2, NOT_FOUND: 1}
    assert table["without_mask"] == {"unknown": 1}
    assert table["mask_weared_incorrect"] == {}
    assert table[STRAY] == {"no_mask": 1}
