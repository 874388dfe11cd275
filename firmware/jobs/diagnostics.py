"""The ``collect_diagnostics`` job: a text bundle of versions, identity, health, configuration (redacted), recent
jobs, recent errors and log lines (built and capped by :mod:`firmware.diagnostics`)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from firmware.diagnostics import MAX_BUNDLE_BYTES, build_bundle, flatten
from firmware.jobs.context import JobContext
from wardsight import __version__, wire
from wardsight.device_config import DeviceConfig
from wardsight.errors import WardSightError

PACKAGES = ("numpy", "opencv-python-headless", "ai-edge-litert", "pydantic", "cryptography", "aiohttp")


def collect_diagnostics(ctx: JobContext, job: wire.Job) -> wire.JobReport:
    return ctx.reports.ok(job, diagnostics_bundle(ctx))


def diagnostics_bundle(ctx: JobContext, cap: int = MAX_BUNDLE_BYTES) -> str:
    """Versions, identity, health, configuration (redacted), recent jobs, recent errors and log lines."""
    config = ctx.hooks.config
    sections: list[tuple[str, list[str]]] = [
        ("device", _device_lines(ctx)),
        ("versions", _version_lines(config)),
        ("health", _health_lines(ctx)),
        ("system", _system_lines(ctx.device_dir)),
        ("config", _config_lines(config)),
        ("jobs", [f"{job_id} {kind} {state}" for job_id, kind, state in ctx.ledger.recent()]),
        ("recent errors", ctx.ring.errors()[-50:]),
        ("logs", ctx.ring.records()),
    ]
    return build_bundle(sections, cap=cap, trim="logs")


def _device_lines(ctx: JobContext) -> list[str]:
    ident = ctx.identity
    return [
        f"device_id = {ident.device_id}",
        f"name = {ident.name}",
        f"room = {ident.room}",
        f"site = {ident.site}",
        f"ward = {ident.ward}",
        f"server_url = {ident.server_url}",
        f"device_time = {time.time():.3f}",
        f"server_time = {ctx.client.server_now():.3f}",
        f"clock_offset_s = {ctx.client.clock_offset}",
    ]


def _version_lines(config: DeviceConfig | None) -> list[str]:
    versions = [
        f"wardsight = {__version__}",
        f"python = {sys.version.split()[0]}",
        f"platform = {platform.platform()}",
    ]
    for package in PACKAGES:
        try:
            versions.append(f"{package} = {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} = not installed")
    if config is not None:
        with contextlib.suppress(WardSightError):
            from accelerators.catalog import get_model

            model = get_model(config.model)
            versions.append(f"model = {model.name} {model.version}")
    return versions


def _health_lines(ctx: JobContext) -> list[str]:
    if ctx.hooks.health is None:
        return ["not available"]
    try:
        return flatten(ctx.hooks.health().model_dump(mode="json", exclude_none=True))
    except Exception as exc:  # diagnostics must come back even when a reading fails
        return [f"unavailable: {type(exc).__name__}"]


def _config_lines(config: DeviceConfig | None) -> list[str]:
    if config is None:
        return ["unknown"]
    # Privacy-region names are free text about the room: they stay on the device.
    dumped = config.model_dump(mode="json")
    dumped["privacy_regions"] = [{"polygon": r["polygon"]} for r in dumped.get("privacy_regions", [])]
    return flatten(dumped)


def _system_lines(device_dir: Path) -> list[str]:
    from firmware.heartbeat import read_system

    readings = read_system()
    lines = [f"cpu_temp_c = {readings.cpu_temp_c}", f"mem_used_mb = {readings.mem_used_mb}"]
    lines.append(f"mem_total_mb = {readings.mem_total_mb}")
    with contextlib.suppress(OSError):
        lines.append(f"uptime_s = {Path('/proc/uptime').read_text().split()[0]}")
    with contextlib.suppress(OSError):
        lines.append(f"load_avg = {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with contextlib.suppress(OSError):
        usage = shutil.disk_usage(device_dir)
        lines.append(f"disk_free_mb = {usage.free / 1e6:.0f} of {usage.total / 1e6:.0f}")
    return lines
