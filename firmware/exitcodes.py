"""The agent's exit statuses that mean something to its supervisor (systemd, ``firmware.supervisor``, the tests)."""

from __future__ import annotations

RESTART_EXIT_CODE = 75  # "start me again" (a new model, a maintenance job): systemd's Restart=always does
FACTORY_RESET_EXIT_CODE = 76  # wiped: do not expect to run again before a new enrollment
