"""Test doubles for hardware libraries that cannot be installed here (see each package's docstring)."""
