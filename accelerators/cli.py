"""``wardsight models``: fetch, verify and list the pinned model files."""

from __future__ import annotations

from pathlib import Path

import click

from accelerators.catalog import MODELS
from accelerators.facemask import FACEMASK_AIZOO
from accelerators.mask_classifier import FACE_LANDMARK, MASK_HEAD
from accelerators.mediapipe_models import MEDIAPIPE_ARTIFACTS
from wardsight.clictx import Context, pass_context
from wardsight.errors import WardSightError
from wardsight.fetch import Artifact, ArtifactStore
from wardsight.footage import DEMO_FOOTAGE
from wardsight.paths import models_dir

ARTIFACTS: dict[str, Artifact] = {
    **{m.name: m.artifact for m in (*MODELS.values(), FACEMASK_AIZOO)},
    **{a.name: a for a in (*MEDIAPIPE_ARTIFACTS, FACE_LANDMARK, MASK_HEAD)},
    DEMO_FOOTAGE.name: DEMO_FOOTAGE,
}
# What `wardsight models fetch` gets without names: what the default configuration and the demo need.
DEFAULT_ARTIFACTS = ("movenet-multipose", DEMO_FOOTAGE.name)


def _select(names: tuple[str, ...]) -> list[Artifact]:
    unknown = [n for n in names if n not in ARTIFACTS]
    if unknown:
        raise WardSightError(f"unknown model '{unknown[0]}' (known: {', '.join(sorted(ARTIFACTS))})")
    return [ARTIFACTS[n] for n in names or DEFAULT_ARTIFACTS]


@click.group()
def models() -> None:
    """Model files: fetched from their publishers, pinned by sha256.

    \b
    Example:
        wardsight models fetch
    """


@models.command("list")
@pass_context
def list_models(ctx: Context) -> None:
    """List known models and whether each is present and verified.

    \b
    Example:
        wardsight models list
    """
    store = ArtifactStore(models_dir(ctx.data_dir))
    for art in ARTIFACTS.values():
        state = "ok" if store.is_present(art) else "missing"
        click.echo(f"{art.name:<28} {state:<8} {art.size:>10} B  {art.licence}")


@models.command()
@click.argument("names", nargs=-1)
@click.option(
    "--mirror",
    "mirrors",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Local mirror directory to try first (repeatable).",
)
@pass_context
def fetch(ctx: Context, names: tuple[str, ...], mirrors: tuple[Path, ...]) -> None:
    """Download NAMES (default: the pose model and demo clip), verify each sha256 and store it in the data directory.

    A wrong hash, a truncated download or no network is an error and leaves no partial file.

    \b
    Example:
        wardsight models fetch movenet-multipose
        wardsight models fetch face-mask-aizoo --mirror /media/usb/wardsight-models
    """
    store = ArtifactStore(models_dir(ctx.data_dir), mirrors=mirrors)
    selected = _select(names)
    for art, path in zip(selected, store.ensure_all(selected), strict=True):
        click.echo(f"{art.name}: {path}")
