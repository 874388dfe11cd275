"""The ``wardsight`` command and ``wardsight demo``: the one place that assembles every package."""
