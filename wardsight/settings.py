"""Typed, validated configuration: a TOML file plus environment overrides.

Every process (device agent, fleet server) has one pydantic model with ``extra="forbid"``; this module
loads it. An unknown key, in the file or in the environment, is an error that names the key.
Environment overrides use a prefix and ``__`` for nesting, e.g. ``WARDSIGHT_DEVICE_ROOM=101`` or
``WARDSIGHT_DEVICE_OCCUPANCY__STABLE_SECONDS=2``; values are parsed as JSON when they parse, else kept
as strings.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from wardsight.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def describe_validation_error(exc: ValidationError, source: str) -> str:
    """One line naming the first offending key."""
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err["loc"]) or "(root)"
    if err["type"] == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    return f"{source}: invalid value for '{key}': {err['msg']}"


def _parse_env_value(raw: str) -> Any:
    """Lists and tables are JSON; scalars stay strings and pydantic converts them to the field's type."""
    if raw.lstrip().startswith(("[", "{")):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(prefix):
            continue
        path = [part.lower() for part in name[len(prefix) :].split("__")]
        if not all(path):
            raise ConfigError(f"environment: malformed override name '{name}'")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment: '{name}' conflicts with another override")
        node[path[-1]] = _parse_env_value(raw)
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_config(
    model: type[M],
    *,
    path: Path | None,
    env_prefix: str,
    environ: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
) -> M:
    """Build ``model`` from ``defaults`` < file at ``path`` < environment variables under ``env_prefix``."""
    data: dict[str, Any] = dict(defaults or {})
    source = "defaults"
    if path is not None:
        data = _merge(data, read_toml(path))
        source = str(path)
    env = _env_overrides(env_prefix, environ)
    if env:
        data = _merge(data, env)
        source = f"{source} + environment ({env_prefix}*)"
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source)) from None
