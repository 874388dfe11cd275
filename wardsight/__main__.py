"""``python -m wardsight``: the ``wardsight`` command (the composition root lives in :mod:`wardsight_cli`)."""

from wardsight_cli.main import main

main()
