"""Fake ``picamera2.devices``: the IMX500 (Raspberry Pi AI Camera) helper. See ``imx500/imx500.py``."""

from .imx500 import IMX500, FakeNetwork, FakePoseNetwork, NetworkIntrinsics

__all__ = ["IMX500", "FakeNetwork", "FakePoseNetwork", "NetworkIntrinsics"]
