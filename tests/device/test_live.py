"""StreamSource against a real MJPEG-over-HTTP stream served on 127.0.0.1 (real JPEG frames of an upfall-dev clip).

The server is written here (http.server, multipart/x-mixed-replace); OpenCV's FFmpeg backend reads it exactly as it
reads an IP camera's MJPEG stream. It can be stopped and restarted on the same port, stall (send headers, or some
frames, then nothing) and send corrupt JPEG parts. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from accelerators.base import Backend
from accelerators.types import Person
from firmware.agent import Agent
from firmware.live import (
    FFMPEG_OPTIONS_ENV,
    RTSP_TCP,
    Backoff,
    LatestFrame,
    StreamSource,
    StreamUnavailable,
    _ffmpeg_options,
)
from firmware.privacy import PrivacyMask
from firmware.sources import CapturedFrame, SourceError
from firmware.streamurl import redact_url
from tests.conftest import SHARED

CLIP = SHARED / "data" / "upfall-dev" / "a07_t1_cam1.mp4"
WIDTH, HEIGHT = 640, 480
FAST = {"open_timeout": 1.0, "stall_timeout": 0.5}  # short, for the tests that exercise them
CALM = {"open_timeout": 5.0, "stall_timeout": 3.0}  # no spurious timeout on a loaded machine


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    if not CLIP.is_file():
        pytest.fail(f"the shared test clip is expected at {CLIP}")
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    while len(frames) < 25:
        ok, bgr = cap.read()
        if not ok:
            break
        assert bgr.shape == (HEIGHT, WIDTH, 3)
        frames.append(cv2.imencode(".jpg", bgr)[1].tobytes())  # the test encodes; product code never does
    cap.release()
    assert len(frames) == 25
    return frames


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames at ``fps`` on 127.0.0.1; ``stop()`` cuts every open connection."""

    def __init__(self, jpegs: list[bytes], fps: float = 25.0, port: int = 0) -> None:
        self.jpegs, self.fps, self.port = jpegs, fps, port
        self.frames_before_stall: int | None = None  # None: never stall; 0: headers only
        self.corrupt = False
        self.connections = 0
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                if not self.path.startswith("/stream.mjpg"):
                    self.send_error(404)
                    return
                server.connections += 1
                server._socks.add(self.connection)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                self.wfile.flush()
                sent = 0
                try:
                    while not server._stop.is_set():
                        stall = server.frames_before_stall
                        if stall is not None and sent >= stall:
                            server._stop.wait(0.05)  # connection open, headers sent, nothing more
                            continue
                        jpeg = server.jpegs[sent % len(server.jpegs)]
                        if server.corrupt:
                            jpeg = b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9"
                        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        self.wfile.write(part + jpeg + b"\r\n")
                        sent += 1
                        server._stop.wait(1.0 / server.fps)
                except OSError:
                    pass
                finally:
                    server._socks.discard(self.connection)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._stop.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for sock in list(self._socks):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server(jpegs: list[bytes]) -> Iterator[MjpegServer]:
    srv = MjpegServer(jpegs).start()
    yield srv
    srv.stop()


@pytest.fixture
def sources() -> Iterator[list[StreamSource]]:
    made: list[StreamSource] = []
    yield made
    for source in made:
        source.close()


def fast_backoff() -> Backoff:
    return Backoff(0.05, 0.3, rng=lambda: 0.5)


class RecordingBackend(Backend):
    name = "recording"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, frame: np.ndarray) -> list[Person]:
        self.shapes.append(frame.shape)
        return []


# -- against a live stream -----------------------------------------------------------------------------------


def test_frames_arrive_with_the_stream_size(server, sources):
    source = StreamSource(server.url, backoff=fast_backoff(), **CALM)
    sources.append(source)
    frames = [source.read() for _ in range(5)]
    assert all(f is not None and f.image.shape == (HEIGHT, WIDTH, 3) and f.image.dtype == np.uint8 for f in frames)
    assert source.frame_size == (WIDTH, HEIGHT) and source.fps == pytest.approx(25.0)
    times = [f.time for f in frames if f is not None]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 2.0
    health = source.health()
    assert health["connected"] == 1 and health["connects"] == 1 and health["captured"] == 5
    assert health["width"] == WIDTH and health["reconnects"] == 0 and health["last_error_age"] == -1
    source.close()
    assert source.read() is None  # closed: the end of the source


def test_agent_keeps_running_through_an_outage_and_resumes_on_the_same_source(jpegs, server, sources):
    source = StreamSource(server.url, backoff=fast_backoff(), **CALM)
    sources.append(source)
    backend = RecordingBackend()
    agent = Agent(source, backend, [], emit=lambda e: None)
    stopped = threading.Event()
    thread = threading.Thread(target=agent.run, kwargs={"stop": stopped}, daemon=True)
    thread.start()
    assert wait_until(lambda: agent.stats.processed >= 5, 5.0)

    server.stop()  # the stream drops
    assert wait_until(lambda: source.health()["connected"] == 0, 2.0)
    reconnects = source.health()["reconnects"]
    assert wait_until(lambda: source.health()["reconnects"] >= reconnects + 3, 3.0)  # retrying, with backoff
    assert thread.is_alive()  # the agent is waiting for frames, not ended
    health = agent.health()
    assert 0 <= health["last_error_age"] < 2.0 and health["errors"] >= 2
    processed = agent.stats.processed

    restarted = MjpegServer(jpegs, port=server.port).start()  # same port, same URL
    try:
        assert wait_until(lambda: agent.stats.processed >= processed + 5, 5.0)
        assert source.connected and source.connects >= 2 and agent.health()["connected"] == 1
    finally:
        stopped.set()
        source.close()  # wakes the agent if it waits for a frame
        thread.join(5.0)
        restarted.stop()
    assert not thread.is_alive()
    assert set(backend.shapes) == {(HEIGHT, WIDTH, 3)} and agent.stats.failed == 0


def test_a_stream_that_stalls_is_detected_within_the_stall_timeout_and_reopened(server, sources):
    server.frames_before_stall = 8
    source = StreamSource(server.url, backoff=fast_backoff(), **FAST)
    sources.append(source)
    assert source.wait_connected(3.0)
    assert wait_until(lambda: source.received >= 8, 3.0)
    t0 = time.monotonic()
    assert wait_until(lambda: not source.connected, 3.0)
    # The last frame arrived at about t0; the read timeout (stall_timeout = 0.5 s) ends the wait.
    assert time.monotonic() - t0 < FAST["stall_timeout"] + 1.0
    assert "stopped delivering" in (source.last_error or "")
    server.frames_before_stall = None
    assert wait_until(lambda: source.connects >= 2, 3.0)  # reopened, frames flow again
    assert source.reconnects >= 1 and source.read() is not None


def test_a_server_that_sends_headers_then_nothing_is_retried(server, sources):
    server.frames_before_stall = 0
    source = StreamSource(server.url, backoff=fast_backoff(), **FAST)
    sources.append(source)
    assert wait_until(lambda: server.connections >= 2, 4.0)  # open timed out, then a new attempt
    assert not source.connected and source.stats.errors >= 1 and source.reconnects >= 1
    assert "cannot open" in (source.last_error or "")
    server.frames_before_stall = None
    assert source.wait_connected(4.0)


def test_corrupt_frames_are_a_recovery_not_an_end(server, sources):
    source = StreamSource(server.url, backoff=fast_backoff(), **FAST)
    sources.append(source)
    assert source.wait_connected(3.0)
    server.corrupt = True
    assert wait_until(lambda: not source.connected, 3.0)
    errors = source.stats.errors
    assert errors >= 1
    server.corrupt = False
    assert source.wait_connected(4.0)
    frame = source.read()
    assert frame is not None and frame.image.shape == (HEIGHT, WIDTH, 3) and frame.image.any()


def test_a_slow_consumer_gets_the_newest_frame_and_drops_the_rest(server, sources):
    source = StreamSource(server.url, backoff=fast_backoff(), **CALM)
    sources.append(source)
    assert source.read() is not None
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        taken, pending = 0, []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            frame = source.read()
            assert frame is not None
            assert time.time() - frame.time < 0.5  # the newest frame; a queue would be seconds behind by now
            taken += 1
            del frame
            time.sleep(0.2)  # inference slower than the 25 fps camera
            pending.append(len(source._mailbox))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(pending) <= 1
    # A frame is 0.9 MB; in flight: decode + convert in the thread, the slot, the caller's. A queue would be ~40.
    assert peak - base < 6 * WIDTH * HEIGHT * 3
    assert 5 <= taken <= 11 and source.stats.dropped >= taken  # most frames dropped, none queued
    server.stop()
    assert wait_until(lambda: not source.connected, 2.0)
    # Every received frame was delivered, dropped, or is the one waiting in the slot.
    assert source.received == source.stats.captured + source.stats.dropped + len(source._mailbox)


def test_the_privacy_mask_is_applied_before_the_frame_is_stored(server, sources):
    left_half = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    source = StreamSource(server.url, privacy=PrivacyMask([left_half]), backoff=fast_backoff(), **CALM)
    sources.append(source)
    stored = source._mailbox.take(3.0)  # straight from the slot, not through read()
    assert stored is not None
    assert not stored.image[:, : WIDTH // 2 - 1].any()
    assert stored.image[:, WIDTH // 2 + 1 :].any()
    frame = source.read()
    assert frame is not None and not frame.image[:, : WIDTH // 2 - 1].any()


def test_credentials_never_reach_logs_or_errors(server, sources, caplog):
    url = f"http://admin:s3cret-pw@127.0.0.1:{server.port}/stream.mjpg?channel=1&token=tok-9f8e7d"
    with caplog.at_level(logging.DEBUG, logger="wardsight"):
        source = StreamSource(url, backoff=fast_backoff(), max_wait=0.3, **FAST)
        sources.append(source)
        assert source.wait_connected(3.0)
        server.stop()
        assert wait_until(lambda: source.reconnects >= 2, 3.0)
        deadline = time.monotonic() + 3.0
        with pytest.raises(StreamUnavailable) as err:
            while time.monotonic() < deadline:  # the server is down: within max_wait (0.3 s) read() raises
                source.read()
        source.close()
    text = caplog.text + str(err.value) + (source.last_error or "") + source.name
    assert "connected" in caplog.text and "retrying" in caplog.text
    assert "s3cret-pw" not in text and "tok-9f8e7d" not in text and "admin" not in text
    assert source.name == f"http://***@127.0.0.1:{server.port}/stream.mjpg?channel=1&token=***"
    assert source.name in caplog.text


def test_rtsp_is_opened_over_tcp_and_retried_when_refused(sources, monkeypatch):
    monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)
    with socket.socket() as sock:  # a loopback port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    source = StreamSource(f"rtsp://cam:pw1234@127.0.0.1:{port}/live", backoff=fast_backoff(), **FAST)
    sources.append(source)
    assert wait_until(lambda: source.reconnects >= 2, 3.0)
    assert not source.connected and "cannot open" in (source.last_error or "")
    source.close()  # no open in flight from here on
    assert FFMPEG_OPTIONS_ENV not in os.environ  # set for the open call only
    with _ffmpeg_options("rtsp://127.0.0.1/x"):
        assert os.environ[FFMPEG_OPTIONS_ENV] == RTSP_TCP
    with _ffmpeg_options("http://127.0.0.1/x"):
        assert FFMPEG_OPTIONS_ENV not in os.environ
    monkeypatch.setenv(FFMPEG_OPTIONS_ENV, "rtsp_transport;udp")
    with _ffmpeg_options("rtsp://127.0.0.1/x"):
        assert os.environ[FFMPEG_OPTIONS_ENV] == "rtsp_transport;udp"  # the operator's choice wins
    assert os.environ[FFMPEG_OPTIONS_ENV] == "rtsp_transport;udp"


# -- the parts -------------------------------------------------------------------------------------------------


def test_backoff_doubles_to_its_maximum_with_jitter_and_resets():
    assert [Backoff(rng=lambda: 0.0).next() for _ in range(1)] == [0.5]
    backoff = Backoff(0.5, 30.0, rng=lambda: 0.0)
    assert [backoff.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    backoff.reset()
    assert backoff.next() == 0.5
    jittered = Backoff(0.5, 30.0, jitter=0.25, rng=lambda: 1.0)
    assert [jittered.next() for _ in range(3)] == [0.375, 0.75, 1.5]
    with pytest.raises(SourceError):
        Backoff(0.0, 1.0)
    with pytest.raises(SourceError):
        Backoff(1.0, 2.0, jitter=1.0)


def test_the_mailbox_holds_one_frame():
    box = LatestFrame()
    a, b = (CapturedFrame(float(i), np.full((2, 2, 3), i, np.uint8)) for i in (1, 2))
    assert box.put(a) is False and box.put(b) is True and len(box) == 1
    assert box.take(0.0) is b and len(box) == 0
    assert box.take(0.01) is None
    threading.Timer(0.05, box.close).start()
    assert box.take(2.0) is None and box.closed  # a waiting taker is woken by close


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://user:pa:ss@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
        ("rtsps://user@cam.local/live", "rtsps://***@cam.local/live"),
        ("http://cam/mjpg?user=admin&pwd=hunter22&res=hd", "http://cam/mjpg?user=admin&pwd=***&res=hd"),
        ("https://[::1]:8443/video?auth_token=zz#frag", "https://[::1]:8443/video?auth_token=***"),
        ("http://cam:99999/x", "<unparseable url>"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/dev/video0", "rtsp:///nohost", -1, True, 1.5])
def test_bad_stream_specs_are_refused_at_once(url):
    with pytest.raises(SourceError):
        StreamSource(url)


def test_device_config_stream_source_keeps_the_agent_alive_while_down(tmp_path):
    """kind = "stream" builds a StreamSource; with nothing listening, the agent's run ends at its deadline."""
    from firmware.assembly import artifact_store, build_source
    from wardsight.device_config import load_device_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "device.toml").write_text(f'[source]\nkind = "stream"\nurl = "http://user:pw@127.0.0.1:{port}/x"\n')
    config = load_device_config(tmp_path, None, {})
    source = build_source(config, artifact_store(tmp_path, config))
    assert isinstance(source, StreamSource)
    try:
        started = time.monotonic()
        stats = Agent(source, RecordingBackend(), [], emit=lambda e: None).run(deadline=time.monotonic() + 2.5)
        assert stats.processed == 0 and time.monotonic() - started < 6
        assert source.health()["connected"] == 0
    finally:
        source.close()
