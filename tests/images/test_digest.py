"""images/twin/digest.py, which decides whether CI runs the slow image tests: the digest moves with a layer's
contents and executable bits and with new files, not with the Markdown docs or the record itself."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.images.conftest import IMAGES

if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)


def load_digest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("images_digest", IMAGES / "twin" / "digest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    hook = tmp_path / "images" / "layer" / "base.d" / "hooks" / "customize10"
    hook.parent.mkdir(parents=True)
    hook.write_text("#!/bin/sh\necho one\n")
    hook.chmod(0o755)
    (tmp_path / "images" / "README.md").write_text("docs\n")
    (tmp_path / "images" / "build").mkdir()
    (tmp_path / "images" / "build" / "out.img").write_text("ignored\n")
    (tmp_path / ".gitignore").write_text("build/\n")
    subprocess.run(["git", "-C", str(tmp_path), "add", "."], check=True)
    return tmp_path


def test_the_digest_follows_what_the_image_tests_test(repo: Path) -> None:
    digest = load_digest().images_digest
    first = digest(repo)
    assert digest(repo) == first
    hook = repo / "images" / "layer" / "base.d" / "hooks" / "customize10"

    (repo / "images" / "README.md").write_text("other docs\n")
    (repo / "images" / "tested.sha256").write_text(first + "\n")
    (repo / "images" / "build" / "out.img").write_text("still ignored\n")
    assert digest(repo) == first

    hook.chmod(0o644)
    assert digest(repo) != first
    hook.chmod(0o755)
    assert digest(repo) == first

    hook.write_text("#!/bin/sh\necho two\n")
    changed = digest(repo)
    assert changed != first
    hook.write_text("#!/bin/sh\necho one\n")

    (repo / "images" / "layer" / "new.yaml").write_text("name: new\n")  # untracked, not ignored: counted
    assert digest(repo) != first
    (repo / "images" / "layer" / "new.yaml").unlink()
    hook.unlink()  # tracked, deleted in the working tree
    assert digest(repo) != first



def test_the_ab_twins_own_files_do_not_move_it(repo: Path) -> None:
    """images/test-twin-ab.sh runs by hand only: its files are not what the CI image tests test."""
    digest = load_digest().images_digest
    first = digest(repo)
    (repo / "images" / "twin" / "layer" / "wardsight-twin-ab.d").mkdir(parents=True)
    (repo / "images" / "twin" / "layer" / "wardsight-twin-ab.d" / "hook").write_text("#!/bin/sh\n")
    (repo / "images" / "twin" / "layer" / "wardsight-twin-ab.yaml").write_text("name: ab\n")
    (repo / "images" / "twin" / "abdisk.py").write_text("x = 1\n")
    (repo / "images" / "test-twin-ab.sh").write_text("#!/bin/sh\n")
    assert digest(repo) == first
    (repo / "images" / "twin" / "layers.py").write_text("y = 2\n")  # shared with the twin CI runs: counted
    assert digest(repo) != first
