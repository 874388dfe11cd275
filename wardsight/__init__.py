"""WardSight: privacy-first computer vision for hospital rooms.

This package holds what every part shares: the wire contract (``wardsight.wire``), the error root,
data-directory paths, configuration loading, pinned-artifact fetching and the one ``wardsight`` CLI.
It imports nothing from ``firmware`` or ``fleet``; they import it.
"""

__version__ = "0.1.0"
