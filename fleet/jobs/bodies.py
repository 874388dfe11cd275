"""The jobs feature's request bodies (pydantic models; unknown fields are refused)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from fleet.jobs import logic
from wardsight import wire
from wardsight.device_config import LayoutEdit
from wardsight.settings import describe_validation_error

MIN_EXPIRES_IN = 60
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_BATCH_DEVICES = 10_000

Ident = Annotated[str, Field(pattern=wire.IDENTIFIER_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Body):
    """Which devices: the listed ones and/or a selection; every given condition must hold."""

    device_ids: Annotated[list[Ident], Field(min_length=1, max_length=MAX_BATCH_DEVICES)] | None = None
    site: Ident | None = None
    ward: Ident | None = None
    room: Ident | None = None
    tags: Annotated[list[Ident], Field(min_length=1, max_length=16)] | None = None  # devices with all of them

    @model_validator(mode="after")
    def _something(self) -> Target:
        if all(v is None for v in (self.device_ids, self.site, self.ward, self.room, self.tags)):
            raise ValueError("give device_ids, site, ward, room or tags")
        return self


class NoParams(_Body):
    pass


class LogLevelParams(_Body):
    level: Literal["debug", "info", "warning", "error"]
    duration_s: Annotated[StrictInt, Field(ge=60, le=24 * 3600)]  # then the device returns to its configured level


class PushConfigParams(_Body):
    # "zones": config is the zone editor's LayoutEdit (JSON), merged by the device into its own device.toml.
    merge: Literal["zones"] | None = None


PARAMS: dict[str, type[_Body]] = dict.fromkeys(get_args(wire.JobKind), NoParams)
PARAMS["set_log_level"] = LogLevelParams
PARAMS["push_config"] = PushConfigParams


def check_layout_edit(text: str) -> LayoutEdit:
    """The zones edit ``text`` is (see ``PushConfigParams``); ValueError naming the problem if it is not one."""
    try:
        return LayoutEdit.model_validate_json(text)
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc, "config (zones edit)")) from None


class CreateJobs(_Body):
    kind: wire.JobKind
    params: dict[str, Any] = Field(default_factory=dict)
    config: Annotated[str, Field(max_length=32 * 1024)] | None = None
    target: Target
    expires_in_s: Annotated[StrictInt, Field(ge=MIN_EXPIRES_IN, le=MAX_EXPIRES_IN)]
    rate_per_minute: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None
    error_threshold: StrictInt | StrictFloat | None = None

    @field_validator("error_threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        logic.threshold_count(value, 1)  # ValueError names the rule
        return value


class RotateRequest(_Body):
    job_id: Annotated[str, Field(pattern=r"^job-[0-9a-f]{16,32}$")]
    public_key: Annotated[str, Field(min_length=43, max_length=43)]
    possession: Annotated[str, Field(min_length=16, max_length=wire.MAX_JWS_BYTES)]
