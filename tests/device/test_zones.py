import numpy as np
import pytest

from accelerators.cpu import CpuPoseBackend
from accelerators.types import KEYPOINT_INDEX, Person
from firmware.assembly import build_zones
from firmware.zones import Zone, ZoneMap
from tests.device.helpers import read_rgb
from wardsight.device_config import load_device_config
from wardsight.errors import ConfigError

LEFT = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
RIGHT = ((0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0))


def person_with(points: dict[str, tuple[float, float]], score=0.9):
    kp = np.zeros((17, 3), np.float32)
    for name, (x, y) in points.items():
        kp[KEYPOINT_INDEX[name]] = (x, y, score)
    return Person((0, 0, 1, 1), 0.8, kp)


def test_zone_membership_uses_the_kinds_keypoints():
    zones = ZoneMap([Zone("sink", "dispenser", LEFT), Zone("bed", "bed", RIGHT)])
    # wrists on the left (at the dispenser), hips and shoulders on the right (on the bed)
    p = person_with({"left_wrist": (100, 50), "left_hip": (500, 200), "right_hip": (520, 200)})
    assert zones.zones_of(p, (640, 480)) == {"sink", "bed"}
    # the same person in a frame twice as wide: the wrist is still in the left half, hips now too
    assert zones.zones_of(p, (1280, 480)) == {"sink"}


def test_low_confidence_keypoints_do_not_count_and_min_keypoints():
    zones = ZoneMap([Zone("door", "door", LEFT, min_keypoints=2)])
    one = person_with({"left_ankle": (10, 400)})
    assert zones.zones_of(one, (640, 480)) == frozenset()
    two = person_with({"left_ankle": (10, 400), "right_ankle": (30, 400)})
    assert zones.zones_of(two, (640, 480)) == {"door"}
    faint = person_with({"left_ankle": (10, 400), "right_ankle": (30, 400)}, score=0.1)
    assert zones.zones_of(faint, (640, 480)) == frozenset()


def test_bad_zones_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        Zone("x", "door", ((0, 0), (1, 1)))
    with pytest.raises(ValueError, match="unknown keypoint"):
        Zone("x", "door", LEFT, keypoints=("left_pinky",))
    with pytest.raises(ValueError, match="unique"):
        ZoneMap([Zone("a", "door", LEFT), Zone("a", "bed", RIGHT)])


def test_zones_from_device_config(tmp_path):
    (tmp_path / "device.toml").write_text(
        '[[zones]]\nname = "dispenser-1"\nkind = "dispenser"\npolygon = [[0, 0], [0.2, 0], [0.2, 0.3]]\n'
        '[[zones]]\nname = "bed"\nkind = "bed"\npolygon = [[0.4, 0.2], [1, 0.2], [1, 1], [0.4, 1]]\n'
        'keypoints = ["left_hip", "right_hip"]\nmin_keypoints = 2\n'
    )
    zones = build_zones(load_device_config(tmp_path, None, {}))
    assert [z.name for z in zones.zones] == ["dispenser-1", "bed"] and zones.zones[1].parts == ("left_hip", "right_hip")
    (tmp_path / "device.toml").write_text(
        '[[zones]]\nname = "x"\nkind = "door"\npolygon = [[0, 0], [1, 0], [1, 1]]\nkeypoints = ["pinky"]\n'
    )
    with pytest.raises(ConfigError, match="unknown keypoint 'pinky'"):
        load_device_config(tmp_path, None, {})


def test_real_person_in_a_zone(movenet_path, shared):
    image = read_rgb(shared / "media" / "astronaut.png")
    (person,) = [p for p in CpuPoseBackend(movenet_path).detect(image) if p.score > 0.25]
    zones = ZoneMap([Zone("left", "room", LEFT), Zone("corner", "room", ((0.8, 0.0), (1.0, 0.0), (1.0, 0.2)))])
    # Her shoulders span the middle of the photo: the left half holds at least one; the top-right corner none.
    assert zones.zones_of(person, (512, 512)) == {"left"}


def test_apps_from_device_config(tmp_path):
    from firmware.apps.bed_exit import BedExitApp
    from firmware.apps.fall import FallApp
    from firmware.assembly import build_apps

    (tmp_path / "device.toml").write_text(
        '[[zones]]\nname = "bed-1"\nkind = "bed"\npolygon = [[0.4, 0.2], [1, 0.2], [1, 1], [0.4, 1]]\n'
        "[fall]\nconfirm_seconds = 2\n[bed_exit]\nenabled = true\n"
    )
    apps = build_apps(load_device_config(tmp_path, None, {}))
    fall = next(a for a in apps if isinstance(a, FallApp))
    assert fall.config.confirm_seconds == 2 and fall.config.bed_zones == {"bed-1"}
    assert any(isinstance(a, BedExitApp) for a in apps)
    (tmp_path / "device.toml").write_text("[bed_exit]\nenabled = true\n")
    with pytest.raises(ConfigError, match="no zone of kind 'bed'"):
        build_apps(load_device_config(tmp_path, None, {}))


def test_an_unconfigured_device_runs_the_fall_rule_with_its_own_defaults(tmp_path):
    """The device configuration's fall defaults are the rule's (the figures in the README are measured with them)."""
    import dataclasses

    from firmware.apps.fall import FallApp, FallConfig
    from firmware.assembly import build_apps

    apps = build_apps(load_device_config(tmp_path, None, {}))
    fall = next(a for a in apps if isinstance(a, FallApp))
    assert fall.config == FallConfig()
    (tmp_path / "device.toml").write_text(
        '[[zones]]\nname = "rug"\nkind = "floor"\npolygon = [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]\n'
    )
    fall = next(a for a in build_apps(load_device_config(tmp_path, None, {})) if isinstance(a, FallApp))
    assert fall.config == dataclasses.replace(FallConfig(), floor_zones=frozenset({"rug"}))


def test_mask_and_occupancy_settings_from_device_config(tmp_path, shared, model_store):
    from firmware.apps.mask import MaskApp
    from firmware.apps.occupancy import OccupancyApp
    from firmware.assembly import build_analyzers, build_apps
    from wardsight.fetch import ArtifactStore

    (tmp_path / "device.toml").write_text(
        '[[zones]]\nname = "door"\nkind = "door"\npolygon = [[0, 0], [0.2, 0], [0.2, 1]]\n'
        '[occupancy]\nmax_people = 3\nvisiting_hours = [8, 20]\nzones = ["door"]\n'
        "[mask]\nenabled = true\nmasks_required = true\ngrace_seconds = 10\n"
    )
    apps = build_apps(load_device_config(tmp_path, None, {}))
    occupancy = next(a for a in apps if isinstance(a, OccupancyApp))
    assert occupancy.config.max_people == 3 and occupancy.config.visiting_hours == (8, 20)
    mask = next(a for a in apps if isinstance(a, MaskApp))
    assert mask.config.masks_required and mask.config.grace_seconds == 10
    # The face models must be present: a clear error names the fetch command when they are not.
    with pytest.raises(Exception, match="models fetch"):
        build_analyzers(apps, ArtifactStore(tmp_path / "empty"), 2)


def test_hand_hygiene_from_device_config(tmp_path):
    from firmware.apps.hygiene import HandHygieneApp
    from firmware.assembly import build_apps

    zones = (
        '[[zones]]\nname = "door"\nkind = "door"\npolygon = [[0, 0], [0.2, 0], [0.2, 1]]\n'
        '[[zones]]\nname = "rub-1"\nkind = "dispenser"\npolygon = [[0.3, 0], [0.4, 0], [0.4, 0.2]]\n'
        '[[zones]]\nname = "bed"\nkind = "bed"\npolygon = [[0.5, 0.2], [1, 0.2], [1, 1]]\n'
    )
    (tmp_path / "device.toml").write_text(zones + "[hand_hygiene]\nenabled = true\nrub_seconds = 25\n")
    app = next(a for a in build_apps(load_device_config(tmp_path, None, {})) if isinstance(a, HandHygieneApp))
    assert app.config.dispenser_zones == {"rub-1"} and app.config.rub_seconds == 25 and app.needs == {"hands"}
    (tmp_path / "device.toml").write_text("[hand_hygiene]\nenabled = true\n")
    with pytest.raises(ConfigError, match="no door zone"):
        build_apps(load_device_config(tmp_path, None, {}))
