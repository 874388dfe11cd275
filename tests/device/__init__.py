"""Tests of the device side: the agent (firmware) and its inference backends (accelerators)."""
