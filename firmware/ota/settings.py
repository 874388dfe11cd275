"""The OTA loop's settings (:class:`firmware.ota.manager.OtaManager`; also importable from there)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OtaSettings:
    backend: str = "cpu"  # the build this device runs from a package (without a ``target`` callback)
    hardware: str | None = None  # on a Hailo: hailo8, hailo8l, hailo10h
    runtime_version: str | None = None  # on a Hailo: the HailoRT version
    poll_seconds: float = 300.0  # the fallback: the jobs long poll wakes the manager when an offer waits
    retry_seconds: float = 60.0
    max_retry_seconds: float = 3600.0  # the same failure again and again backs off up to this
    max_attempts: int = 5  # tries of one offer that fail verification (not the network) before giving up
    health_frames: int = 30
    health_seconds: float = 120.0
    health_max_failed: int = 3
    selftest_timeout: float = 90.0
    max_invoke_seconds: float = 5.0
    threads: int = 1
    progress_seconds: float = 2.0  # how often a trial reports its health-check frames (best effort)
