"""What every CLI group receives: the resolved data directory and the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click


@dataclass
class Context:
    data_dir: Path
    environ: dict[str, str]


pass_context = click.make_pass_decorator(Context)
