"""Fake ``hailo_platform.pyhailort`` (see ``hailo_platform/__init__.py``)."""

from . import pyhailort

__all__ = ["pyhailort"]
