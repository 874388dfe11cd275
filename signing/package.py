"""Build a model package (``.wsm``) from the ``wardsight ota package`` command's specs.

Bad specs raise click's :class:`~click.UsageError` (a malformed ``--input``/``--build``) or
:class:`~click.ClickException` (a missing file, an invalid build or manifest), as the command reports them.
"""

from __future__ import annotations

from pathlib import Path

import click

from wardsight import modelpkg


def parse_inputs(inputs: tuple[str, ...]) -> dict[str, int | float | str]:
    """``KEY=VALUE`` input settings; all-digit values become ints."""
    settings: dict[str, int | float | str] = {}
    for item in inputs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--input {item!r}: expected KEY=VALUE")
        settings[key] = int(value) if value.isdigit() else value
    return settings


SPEC = "BACKEND:RUNTIME:DECODER:FILE[:HARDWARE[:RUNTIME_VERSION]]"


def parse_build(spec: str, settings: dict[str, int | float | str]) -> tuple[modelpkg.Build, Path]:
    """One ``BACKEND:RUNTIME:DECODER:FILE[:HARDWARE[:RUNTIME_VERSION]]`` spec: its build (sha256 and size of the
    file) and file. A Hailo build (a HEF) must name its chip (hailo8, hailo8l, hailo10h) and the HailoRT version it
    was compiled for, e.g. ``hailo:hailort:yolov8_pose:pose.hef:hailo8l:4.23.0``: devices refuse a HEF without."""
    parts = spec.split(":")
    if len(parts) not in (4, 5, 6):
        raise click.UsageError(f"--build {spec!r}: expected {SPEC}")
    backend, runtime, decoder, file = parts[:4]
    hardware = parts[4] if len(parts) >= 5 and parts[4] else None
    runtime_version = parts[5] if len(parts) == 6 and parts[5] else None
    if backend == "hailo" and (hardware not in modelpkg.HAILO_CHIPS or runtime_version is None):
        raise click.UsageError(
            f"--build {spec!r}: a Hailo build needs its chip ({', '.join(modelpkg.HAILO_CHIPS)}) and the HailoRT "
            "version it was compiled for, e.g. hailo:hailort:yolov8_pose:pose.hef:hailo8l:4.23.0"
        )
    path = Path(file)
    if not path.is_file():
        raise click.ClickException(f"no such model file: {path}")
    digest, size = modelpkg.describe_file(path)
    try:
        build = modelpkg.Build.model_validate(
            {
                "backend": backend,
                "runtime": runtime,
                "file": path.name,
                "sha256": digest,
                "size": size,
                "input": settings,
                "decoder": decoder,
                "hardware": hardware,
                "runtime_version": runtime_version,
            }
        )
    except ValueError as exc:
        raise click.ClickException(f"--build {spec!r}: {exc}") from None
    return build, path


def build_package(
    out: Path,
    *,
    name: str,
    version: str,
    task: str,
    licence: str,
    min_agent_version: str,
    builds: tuple[str, ...],
    inputs: tuple[str, ...],
) -> int:
    """Write the package to ``out``; return how many builds it holds."""
    settings = parse_inputs(inputs)
    parsed, files = [], {}
    for spec in builds:
        build, path = parse_build(spec, settings)
        parsed.append(build)
        files[path.name] = path
    try:
        manifest = modelpkg.Manifest(
            name=name, version=version, task=task, license=licence, min_agent_version=min_agent_version, builds=parsed
        )
        modelpkg.write_package(out, manifest, files)
    except (ValueError, modelpkg.PackageError) as exc:
        raise click.ClickException(str(exc)) from None
    return len(parsed)
