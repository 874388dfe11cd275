"""A fake ``picamera2`` package: the parts of the real API that WardSight uses, with its invariants enforced.

Why a whole package: ``import picamera2`` imports the ``libcamera`` bindings at module top, and those come
from Raspberry Pi OS (python3-libcamera), not PyPI, so off a Pi the real package cannot even be imported.
Tests put this package into ``sys.modules["picamera2"]`` (monkeypatch) so that the code under test's
``import picamera2`` resolves to it.

Modelled on raspberrypi/picamera2 (0.3.x; ``picamera2/picamera2.py`` and ``picamera2/request.py``), see
``/work/shared/reference/EDGE_APIS.md`` section 1. What is faithful:

- ``Picamera2(camera_num)`` indexes the attached cameras (``IndexError`` for a missing index, as the real
  ``global_camera_info()[camera_num]`` does; ``RuntimeError("Camera __init__ sequence did not complete.")``
  when a camera fails to open or is already open elsewhere).
- ``create_{preview,still,video}_configuration`` return plain dicts with the real keys and defaults; a stream
  dict key other than format/size/stride/preserve_ar raises ``ValueError("Bad key ...")``; the default
  NoiseReductionMode/FrameDurationLimits controls are injected and the caller's controls override them.
- ``configure`` checks what the real ``check_camera_config`` checks (size a tuple of even numbers, a known
  format per stream, lores not larger than main), raises ``RuntimeError("Camera must be stopped before
  configuring")`` while started, fills in ``stride`` (rows padded to 64 bytes, as on the Pi 5) and
  ``framesize``, and allocates ``buffer_count`` buffers per stream.
- Pixel layouts follow ``MappedArray``/``Helpers.make_array``: RGB888 is (h, w, 3) in **B, G, R** byte order,
  BGR888 is R, G, B, XBGR8888/XRGB8888 are (h, w, 4) (R,G,B,X / B,G,R,X), YUV420 is (h*3//2, stride) with the
  row padding kept. Row padding bytes are filled with junk (0xA5), so stride bugs show.
- ``pre_callback(request)`` runs for every new frame before any capture gets it; the frames are generated
  from an injectable list of scenes (BGR images as ``cv2.imread`` returns them), resized to each stream.
- ``capture_request()`` hands out a ``CompletedRequest`` holding one reference; ``acquire``/``release`` are
  reference counted and a negative count raises ``RuntimeError``; at count 0 the buffer goes back to the
  camera and is reused for later frames (the fake poisons it with 0x5A at once, so a view kept past
  ``release()`` visibly changes); using a released request raises ``RuntimeError``.
- ``MappedArray(request, stream, write=True)`` is a context manager whose ``.array`` is a zero-copy view of
  the request's buffer (read-only with ``write=False``) and is None outside the ``with``; ``make_array`` and
  ``make_buffer`` return copies; an undefined stream raises ``RuntimeError("Stream 'x' is not defined")``.
- ``capture_request(wait=<seconds>)`` raises ``TimeoutError`` (what ``concurrent.futures.Future.result``
  raises in the real ``Job.get_result``) when no frame comes; so do ``capture_array``/``capture_arrays``/
  ``capture_buffer``/``capture_buffers``/``capture_image``/``capture_metadata``, which each take the next request,
  copy out of it and release it. ``capture_metadata()`` returns only the frame's metadata dict.
- There is no configuration without a main stream (EDGE_APIS.md 1.2): ``create_*_configuration(main=None)`` raises
  the real builder's ``TypeError`` (its ``align_stream(None)``) and ``configure`` a config whose main is None
  raises ``RuntimeError("main stream should be a dictionary")``. A small main (e.g. 64x64) is the way to stream
  without wanting images; sizes are made even by the builders, odd sizes are refused by ``configure``.
- ``make_image`` / ``capture_image`` build a PIL image as the real ``Helpers.make_image`` does (pillow is imported
  only then; YUV streams raise ``RuntimeError("Stream format ... not supported for PIL images")``).
- An "imx500" camera advertises the ``CnnEnableInputTensor`` control (see ``devices/imx500``).

**Pixels handed to the process** (fake-only, for privacy tests such as the IMX500 sensor-only mode): every time
image pixels of a camera buffer reach the process the fake counts one hand-out on ``FakeSensor.pixels_handed_out``
(per sensor, kept across the Picamera2 objects that open it and after ``close()``), on
``FakeSensor.pixel_handouts`` (a ``Counter`` by kind) and on ``Picamera2.pixels_handed_out`` (per camera object).
Counted, one per stream buffer: ``MappedArray(...)`` entered (any ``write``/``reshape``, in ``pre_callback`` or
anywhere: kind "MappedArray"), ``CompletedRequest.make_array`` / ``make_buffer`` / ``make_image`` (kinds of those
names; so ``capture_array``, ``capture_arrays(names)`` (one per name), ``capture_buffer(s)`` and ``capture_image``
count through them), and ``get_metadata()`` of a frame whose metadata carries the IMX500 ``CnnInputTensor`` (kind
"CnnInputTensor"; also via ``capture_metadata``/``capture_arrays``). Not counted: ``capture_request`` /
``captured_request`` by themselves, ``get_metadata`` / ``capture_metadata`` without an input tensor, and the
fake's own rendering of frames into its buffers. A sensor-only loop of ``capture_metadata()`` calls leaves the
count at 0.

Where the fake is deliberately stricter than the real camera (each of these is a hang, a silent fallback or
a race in the real thing; a test should fail fast instead):

- **Held buffers stall the camera.** The real pipeline has ``buffer_count`` buffers; every request the
  application holds unreleased keeps one away from libcamera, and once the application holds them all no
  new frame can complete, so ``capture_request()`` blocks forever (or times out). The fake counts
  outstanding requests (``Picamera2.outstanding``): with ``buffer_count`` held, the next ``capture_request``
  raises ``TimeoutError`` when given a ``wait`` timeout and ``RuntimeError`` when it would block forever.
- A ``capture_request`` before ``start()`` (or after ``stop()``/``close()``) hangs on the real camera; the
  fake raises ``RuntimeError``. Likewise a blocking capture from a camera that stopped delivering.
- ``start()`` without a prior ``configure()`` silently configures the *preview* configuration on the real
  camera (XBGR8888 640x480, which is never what a caller wants); the fake raises ``RuntimeError("Camera has
  not been configured")``.
- ``post_callback`` timing relative to a request the application holds is a race on the real camera; the
  fake does not model it and raises ``NotImplementedError`` if one is set. Asynchronous captures
  (``wait=False`` / ``signal_function``) are not modelled either and raise ``NotImplementedError``.
- The raw stream is accepted in configurations but not simulated: mapping it raises ``RuntimeError``.

Fake-only controls (not in the real package): ``add_camera(scenes, ...)`` attaches a ``FakeSensor`` and
``reset()`` detaches all; ``FakeSensor.pixels_handed_out`` (above); ``FakeSensor.fail_after(n)`` /
``fail_with(exc)`` make the camera stop delivering; ``Picamera2.taps`` holds functions called with each request
right after ``pre_callback`` returns (standing in for everything downstream of it: capture jobs, encoders, the
preview); ``Picamera2.outstanding`` and ``Picamera2.requests_issued`` count requests.
"""

from .camera import FakeSensor, Picamera2, Preview, add_camera, attached, reset
from .request import CompletedRequest, MappedArray

__all__ = [
    "CompletedRequest",
    "FakeSensor",
    "MappedArray",
    "Picamera2",
    "Preview",
    "add_camera",
    "attached",
    "reset",
]
