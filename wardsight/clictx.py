"""What every CLI group receives: the resolved data directory and the environment; the ``--config`` option."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click


@dataclass
class Context:
    data_dir: Path
    environ: dict[str, str]


pass_context = click.make_pass_decorator(Context)

_F = TypeVar("_F", bound=Callable[..., Any])


def config_option(help_text: str) -> Callable[[_F], _F]:
    """The ``--config FILE`` option, passed as ``config_path`` (None when not given)."""
    return click.option(
        "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help_text
    )
