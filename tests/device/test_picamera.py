"""Picamera2Source against the fake picamera2 package (tests/fakes/picamera2), which enforces the real API's rules."""

import sys

import cv2
import numpy as np
import pytest

from firmware.picamera import INSTALL_HINT, Picamera2Source
from firmware.privacy import PrivacyMask
from firmware.sources import SourceError
from tests.device.fakes import picamera2 as fake_picamera2

LEFT_QUARTER = [(0.0, 0.0), (0.25, 0.0), (0.25, 1.0), (0.0, 1.0)]


@pytest.fixture
def fake(monkeypatch):
    """`import picamera2` resolves to the fake; no camera is attached until a test adds one."""
    fake_picamera2.reset()
    monkeypatch.setitem(sys.modules, "picamera2", fake_picamera2)
    yield fake_picamera2
    fake_picamera2.reset()


@pytest.fixture(scope="session")
def scenes(shared):
    """Real photographs as the sensor 'sees' them: BGR, as cv2.imread returns (and as RGB888 lays out)."""
    images = [cv2.imread(str(shared / "media" / name)) for name in ("astronaut.png", "camera.png")]
    assert all(im is not None for im in images)
    return images


def expected_rgb(scene_bgr, size):
    return cv2.cvtColor(cv2.resize(scene_bgr, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def i420_planes(yuv, w, h):
    """Y, U, V planes of a YUV420 array shaped (h*3//2, stride) as MappedArray/make_array give it."""
    stride = yuv.shape[1]
    flat = yuv.reshape(-1)
    y = flat[: h * stride].reshape(h, stride)[:, :w]
    plane = (h // 2) * (stride // 2)
    u = flat[h * stride : h * stride + plane].reshape(h // 2, stride // 2)[:, : w // 2]
    v = flat[h * stride + plane : h * stride + 2 * plane].reshape(h // 2, stride // 2)[:, : w // 2]
    return y, u, v


# -- frames ------------------------------------------------------------------------------------------------


def test_frames_are_rgb_at_the_configured_size(fake, scenes):
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(250, 188), fps=15)
    try:
        assert source.frame_size == (250, 188) and source.fps == 15
        for scene in scenes * 2:
            frame = source.read()
            assert frame is not None
            assert frame.image.dtype == np.uint8 and frame.image.shape == (188, 250, 3)
            assert frame.image.flags["C_CONTIGUOUS"] and frame.image.flags["WRITEABLE"]
            assert np.array_equal(frame.image, expected_rgb(scene, (250, 188)))
        config = sensor.camera.camera_configuration()
        assert config["use_case"] == "video"
        assert config["main"]["format"] == "RGB888" and config["main"]["size"] == (250, 188)
        assert config["main"]["stride"] > 250 * 3  # padded rows: the source must not assume a packed buffer
        assert config["lores"] is None
        assert config["controls"]["FrameDurationLimits"] == (66667, 66667)  # 15 fps, in microseconds
        assert source.health()["width"] == 250 and source.stats.captured == 4
    finally:
        source.close()


def test_channel_order_red_stays_red(fake):
    red_bgr = np.zeros((48, 64, 3), np.uint8)
    red_bgr[..., 2] = 255
    fake.add_camera([red_bgr])
    with_source = Picamera2Source(0, size=(64, 48))
    frame = with_source.read()
    with_source.close()
    assert frame is not None
    assert (frame.image[..., 0] == 255).all() and not frame.image[..., 1:].any()


def test_frames_are_our_own_copies(fake, scenes):
    """The request buffer is recycled after release; a frame that were a view into it would change."""
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240))
    first = source.read()
    assert first is not None
    kept = first.image.copy()
    for _ in range(20):
        source.read()
    assert np.array_equal(first.image, kept)
    for buffers in sensor.camera._pool:
        assert not any(np.shares_memory(first.image, b) for b in buffers.values())
    source.close()


# -- privacy -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lores_format", ["YUV420", "RGB888"])
def test_privacy_region_is_zero_in_the_camera_buffers_when_pre_callback_returns(fake, scenes, lores_format):
    sensor = fake.add_camera(scenes)
    privacy = PrivacyMask([LEFT_QUARTER])
    source = Picamera2Source(0, size=(320, 240), lores_size=(160, 120), lores_format=lores_format, privacy=privacy)
    camera = sensor.camera
    assert camera.pre_callback is not None
    downstream = []  # what the first thing after pre_callback (a capture job, an encoder, the preview) gets
    camera.taps.append(lambda request: downstream.append((request.make_array("main"), request.make_array("lores"))))
    for _ in range(4):
        source.read()
    assert len(downstream) == 4

    main_mask = PrivacyMask([LEFT_QUARTER]).mask_for(320, 240)
    lores_mask = PrivacyMask([LEFT_QUARTER]).mask_for(160, 120)
    for i, (main_bgr, lores) in enumerate(downstream):
        scene = scenes[i % len(scenes)]
        original = cv2.resize(scene, (320, 240), interpolation=cv2.INTER_AREA)
        assert original[main_mask].any(), "the scene must have content in the region for this test to mean anything"
        assert not main_bgr[main_mask].any()
        assert np.array_equal(main_bgr[~main_mask], original[~main_mask])
        if lores_format == "RGB888":
            assert lores.shape == (120, 160, 3) and not lores[lores_mask].any()
            assert lores[~lores_mask].any()
            continue
        y, u, v = i420_planes(lores, 160, 120)
        assert not y[lores_mask].any() and y[~lores_mask].any()
        chroma = lores_mask.reshape(60, 2, 80, 2).any(axis=(1, 3))
        assert (u[chroma] == 128).all() and (v[chroma] == 128).all()
        packed = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(180, 160)
        assert not cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_I420)[lores_mask].any()  # black, not just dark
    source.close()


def test_frames_read_have_the_region_zeroed_and_the_rest_intact(fake, scenes):
    fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240), privacy=PrivacyMask([LEFT_QUARTER]))
    mask = PrivacyMask([LEFT_QUARTER]).mask_for(320, 240)
    frame = source.read()
    assert frame is not None
    assert not frame.image[mask].any()
    assert np.array_equal(frame.image[~mask], expected_rgb(scenes[0], (320, 240))[~mask])
    source.close()


def test_a_frame_that_bypassed_the_blanking_never_comes_out(fake, scenes):
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240), privacy=PrivacyMask([LEFT_QUARTER]))
    sensor.camera.pre_callback = None  # e.g. some other component replaced the callback
    with pytest.raises(SourceError, match="privacy blanking did not run"):
        source.read()
    assert source.stats.errors == 1 and source.stats.captured == 0
    assert sensor.camera.outstanding == 0
    source.close()


def test_a_failing_blanking_blacks_out_the_whole_frame_and_is_not_read(fake, scenes):
    class BrokenMask(PrivacyMask):
        def mask_for(self, width, height):
            return np.ones((height + 2, width), dtype=bool)  # wrong shape: indexing the buffer raises

    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240), privacy=BrokenMask([LEFT_QUARTER]))
    downstream = []
    sensor.camera.taps.append(lambda request: downstream.append(request.make_array("main")))
    with pytest.raises(SourceError, match="privacy blanking did not run"):
        source.read()
    assert len(downstream) == 1 and not downstream[0].any()  # fail closed for everyone downstream too
    assert sensor.camera.outstanding == 0
    source.close()


# -- requests and health -----------------------------------------------------------------------------------


def test_every_request_is_released(fake, scenes):
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240), lores_size=(160, 120), privacy=PrivacyMask([LEFT_QUARTER]))
    camera = sensor.camera
    buffers = camera.camera_configuration()["buffer_count"]
    for _ in range(30 * buffers):  # a single leaked request per read would stall the fake after `buffers` reads
        assert source.read() is not None
    assert camera.requests_issued == 30 * buffers and camera.outstanding == 0
    source.close()
    assert camera.unreleased_at_close == 0 and not camera.is_open and sensor.opened_by is None


def test_a_camera_that_stops_delivering_is_a_source_error(fake, scenes):
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240), capture_timeout=0.5)
    sensor.fail_after(3)
    for _ in range(3):
        assert source.read() is not None
    with pytest.raises(SourceError, match=r"camera 0 stopped delivering frames \(none within 0.5 s\)"):
        source.read()
    assert source.stats.errors == 1 and source.stats.captured == 3
    assert sensor.camera.flushes == 1  # the timed-out capture job was cancelled, so it cannot leak a request
    with pytest.raises(SourceError):
        source.read()
    assert source.stats.errors == 2 and sensor.camera.outstanding == 0
    source.close()


def test_a_failing_capture_is_a_source_error(fake, scenes):
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240))
    sensor.fail_with(RuntimeError("Failed to queue buffer: Device or resource busy"))
    with pytest.raises(SourceError, match="camera 0 failed to capture: Failed to queue buffer"):
        source.read()
    assert source.stats.errors == 1
    source.close()


def test_close_releases_the_camera(fake, scenes):
    sensor = fake.add_camera(scenes)
    source = Picamera2Source(0, size=(320, 240))
    source.read()
    source.close()
    source.close()  # idempotent
    assert sensor.opened_by is None and not sensor.camera.started
    with pytest.raises(SourceError, match="closed"):
        source.read()
    again = Picamera2Source(0, size=(320, 240))  # the camera can be opened again
    assert again.read() is not None
    again.close()


# -- opening -----------------------------------------------------------------------------------------------


def test_missing_picamera2_is_a_clear_source_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # makes `import picamera2` fail
    with pytest.raises(SourceError) as err:
        Picamera2Source(0)
    assert str(err.value) == INSTALL_HINT
    assert "sudo apt install python3-picamera2" in str(err.value)


def test_picamera2_without_its_libcamera_bindings_says_so(monkeypatch, tmp_path):
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text("import libcamera\n")  # the real package's first import
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    monkeypatch.setitem(sys.modules, "libcamera", None)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SourceError, match="python3-picamera2 .*libcamera"):
        Picamera2Source(0)


def test_no_camera_or_a_busy_camera_is_a_source_error(fake, scenes):
    with pytest.raises(SourceError, match="camera 0 not found"):
        Picamera2Source(0)
    sensor = fake.add_camera(scenes)
    first = Picamera2Source(0, size=(320, 240))
    with pytest.raises(SourceError, match="cannot open Raspberry Pi camera 0"):
        Picamera2Source(0, size=(320, 240))
    assert first.read() is not None and sensor.opened_by is sensor.camera
    first.close()


def test_a_configuration_failure_closes_the_camera(fake, scenes, monkeypatch):
    sensor = fake.add_camera(scenes)

    def refuse(self, camera_config=None):
        raise RuntimeError("Configuration failed")

    monkeypatch.setattr(fake.Picamera2, "configure", refuse)
    with pytest.raises(SourceError, match="cannot configure Raspberry Pi camera 0: Configuration failed"):
        Picamera2Source(0)
    assert sensor.opened_by is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": (321, 240)},
        {"size": (0, 240)},
        {"fps": 0},
        {"lores_size": (640, 480), "size": (320, 240)},
        {"lores_size": (160, 120), "lores_format": "NV12"},
    ],
)
def test_bad_arguments_are_source_errors(fake, scenes, kwargs):
    sensor = fake.add_camera(scenes)
    with pytest.raises(SourceError):
        Picamera2Source(0, **kwargs)
    assert sensor.opened_by is None


# -- the fake enforces the real API's rules (so that the tests above mean something) ------------------------


@pytest.fixture
def camera(fake, scenes):
    fake.add_camera(scenes)
    cam = fake.Picamera2(0)
    yield cam
    cam.close()


def video_config(cam, **kwargs):
    return cam.create_video_configuration(main={"format": "RGB888", "size": (320, 240)}, **kwargs)


def test_fake_refuses_capture_before_start_and_start_before_configure(camera):
    with pytest.raises(RuntimeError, match="before start"):
        camera.capture_request(wait=1)
    with pytest.raises(RuntimeError, match="not been configured"):
        camera.start()
    camera.configure(video_config(camera))
    camera.start()
    with pytest.raises(RuntimeError, match="Camera must be stopped before configuring"):
        camera.configure(video_config(camera))
    camera.capture_request(wait=1).release()
    camera.stop()
    with pytest.raises(RuntimeError, match="before start"):
        camera.capture_request(wait=1)


def test_fake_stalls_when_all_buffers_are_held(camera):
    camera.configure(video_config(camera, buffer_count=3))
    camera.start()
    held = [camera.capture_request(wait=1) for _ in range(3)]
    assert camera.outstanding == 3
    with pytest.raises(TimeoutError, match="all 3 buffers are held"):
        camera.capture_request(wait=0.1)
    with pytest.raises(RuntimeError, match="would block for ever"):
        camera.capture_request()
    held.pop().release()
    held.append(camera.capture_request(wait=1))
    for request in held:
        request.release()
    assert camera.outstanding == 0


def test_fake_requests_are_ref_counted(camera):
    camera.configure(video_config(camera))
    camera.start()
    request = camera.capture_request(wait=1)
    request.acquire()
    request.release()
    assert camera.outstanding == 1  # still one reference
    request.release()
    assert camera.outstanding == 0
    with pytest.raises(RuntimeError, match="negative ref_count"):
        request.release()
    with pytest.raises(RuntimeError, match="ref_count 0"):
        request.acquire()
    with pytest.raises(RuntimeError, match="after release"):
        request.make_array("main")
    with pytest.raises(RuntimeError, match="after release"):
        fake_picamera2.MappedArray(request, "main")


def test_fake_mapped_array_is_a_writable_view_and_make_array_a_copy(camera):
    camera.configure(video_config(camera))
    camera.start()
    with camera.captured_request(wait=1) as request:
        copy = request.make_array("main")
        assert copy.shape == (240, 320, 3) and copy.flags["C_CONTIGUOUS"]
        with fake_picamera2.MappedArray(request, "main") as m:
            assert m.array.shape == (240, 320, 3)
            m.array[:10] = 7
        assert m.array is None  # only valid inside the `with`
        assert (request.make_array("main")[:10] == 7).all() and not (copy[:10] == 7).all()
        with fake_picamera2.MappedArray(request, "main", write=False) as m, pytest.raises(ValueError):
            m.array[0, 0] = 1
        with pytest.raises(RuntimeError, match="Stream 'lores' is not defined"):
            request.make_array("lores")
    assert camera.outstanding == 0


def test_fake_checks_configurations_like_the_real_one(camera):
    with pytest.raises(ValueError, match="Bad key"):
        camera.create_video_configuration(main={"format": "RGB888", "size": (320, 240), "fps": 30})
    bad = [
        video_config(camera, lores={"size": (640, 480)}),  # lores larger than main
        camera.create_video_configuration(main={"format": "RGB888", "size": [320, 240]}),  # size not a tuple
        camera.create_video_configuration(main={"format": "RGB", "size": (320, 240)}),
        video_config(camera, controls={"Brightness2": 1}),
    ]
    for config in bad:
        with pytest.raises(RuntimeError):
            camera.configure(config)
    config = video_config(camera)
    config["main"]["size"] = (321, 240)
    with pytest.raises(RuntimeError, match="even"):
        camera.configure(config)
    defaults = camera.create_video_configuration()
    assert defaults["main"]["format"] == "XBGR8888" and defaults["main"]["size"] == (1280, 720)
    assert defaults["buffer_count"] == 6 and defaults["controls"]["FrameDurationLimits"] == (33333, 33333)
    assert camera.create_preview_configuration()["main"]["size"] == (640, 480)


def test_fake_models_no_post_callback_rather_than_a_wrong_one(camera):
    camera.configure(video_config(camera))
    camera.start()
    camera.post_callback = lambda request: None
    with pytest.raises(NotImplementedError):
        camera.capture_request(wait=1)


def test_fake_opens_only_attached_cameras_once(fake, scenes):
    with pytest.raises(IndexError):
        fake.Picamera2(0)
    fake.add_camera(scenes)
    cam = fake.Picamera2(0)
    with pytest.raises(RuntimeError, match="Camera __init__ sequence did not complete"):
        fake.Picamera2(0)
    cam.close()
    fake.Picamera2(0).close()


def test_device_config_builds_a_picamera_source(fake, scenes, tmp_path):
    """`source.kind = "picamera"` in device.toml gives a Picamera2Source with the privacy regions applied."""
    from firmware.assembly import artifact_store, build_source
    from wardsight.device_config import load_device_config

    fake.add_camera(scenes)
    (tmp_path / "device.toml").write_text(
        '[source]\nkind = "picamera"\nsize = [640, 480]\nfps = 10\n'
        '[[privacy_regions]]\nname = "door"\npolygon = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n'
    )
    config = load_device_config(tmp_path, None, {})
    source = build_source(config, artifact_store(tmp_path, config))
    try:
        frame = source.read()
        assert frame is not None and frame.image.shape == (480, 640, 3)
        assert not frame.image[:, :319].any() and frame.image[:, 330:].any()
    finally:
        source.close()
