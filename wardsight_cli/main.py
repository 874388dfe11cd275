"""The one ``wardsight`` command. Each package contributes a group; this module only assembles them.

User mistakes (bad config, missing model, refused enrollment, unreadable file) end as one line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from wardsight import __version__, paths
from wardsight.clictx import Context
from wardsight.errors import WardSightError


class WardSightGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WardSightError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None


@click.group(cls=WardSightGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $WARDSIGHT_DATA_DIR or $XDG_DATA_HOME/wardsight).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(__version__, prog_name="wardsight")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: int) -> None:
    """WardSight: privacy-first computer vision for hospital rooms.

    \b
    Example:
        wardsight demo --duration 20
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(paths.data_dir(data_dir), dict(os.environ))


def _register() -> None:
    from accelerators.cli import models
    from firmware.cli import device
    from firmware.evaluation import eval_command
    from fleet.accounts.cli import operators_cli
    from fleet.cli import fleet
    from provisioning.cli import provision
    from signing.commands import ota
    from wardsight.webhooks import verify_webhook
    from wardsight_cli.demo import demo

    fleet.add_command(operators_cli)
    for command in (fleet, device, provision, models, ota, demo, eval_command, verify_webhook):
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="wardsight")
    except KeyboardInterrupt:
        sys.exit(130)
