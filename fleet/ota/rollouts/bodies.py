"""The operators' request bodies for rollouts (validated by pydantic: every refusal a 400 naming the field)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet.ota.rollouts.spec import Window
from wardsight import wire


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]  # as in the model package manifest
# Any version the system itself uses: a package's (dotted numbers, ``wardsight.modelpkg.VERSION``) or one a device
# reports for the model built into the agent (``lightning-fp16-1``). Whether it can be rolled out (or rolled back
# to) is decided with words, not a pattern (``fleet.ota.rollouts.refusals``).
ModelVersion = wire.Version
Ident = Annotated[str, Field(pattern=wire.IDENTIFIER_PATTERN)]
Reason = Annotated[str, Field(min_length=1, max_length=200)]
HourMinute = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class SelectorBody(_Body):
    site: Ident | None = None
    ward: Ident | None = None
    room: Ident | None = None
    tags: Annotated[list[Ident], Field(max_length=16)] = Field(default_factory=list)
    percent: Annotated[float, Field(gt=0, le=100)] | None = None
    system_version: wire.Version | None = None  # devices whose latest heartbeat reports this system version


class _OneOf(_Body):
    """A body that gives exactly one of its two fields; ``what`` names it in the refusal."""

    what: ClassVar[str]

    @model_validator(mode="after")
    def _one(self) -> Self:
        first, second = type(self).model_fields
        if (getattr(self, first) is None) == (getattr(self, second) is None):
            raise ValueError(f"give {self.what} either {first} or {second}")
        return self


class GroupBody(_OneOf):
    what = "a group"
    count: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    percent: Annotated[float, Field(gt=0, le=100)] | None = None


class ErrorThresholdBody(_OneOf):
    what = "the error threshold"
    count: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    fraction: Annotated[float, Field(ge=0, lt=1)] | None = None


class WindowBody(_Body):
    start: HourMinute
    end: HourMinute
    utc_offset_minutes: Annotated[int, Field(ge=-840, le=840)] = 0

    @model_validator(mode="after")
    def _not_empty(self) -> WindowBody:
        if self.start == self.end:
            raise ValueError("the window must not start and end at the same time")
        return self

    def window(self) -> Window:
        def minute(text: str) -> int:
            hours, minutes = text.split(":")
            return int(hours) * 60 + int(minutes)

        return Window(minute(self.start), minute(self.end), self.utc_offset_minutes)


class NewRollout(_Body):
    kind: wire.UpdateKind = "model"  # "system": a RAUC bundle; ``model`` is then its RAUC compatible
    model: ModelName
    version: ModelVersion
    selector: SelectorBody
    groups: Annotated[list[GroupBody], Field(min_length=1, max_length=32)]
    success_threshold: Annotated[float, Field(gt=0, le=1)]
    error_threshold: ErrorThresholdBody
    in_progress_timeout_s: Annotated[int, Field(ge=60, le=7 * 24 * 3600)]
    window: WindowBody | None = None
    previous_version: ModelVersion | None = None  # for rollback, where a device's own is not known

    @model_validator(mode="after")
    def _versions(self) -> NewRollout:
        if self.previous_version is not None and self.previous_version == self.version:
            raise ValueError("previous_version must differ from version")
        if self.kind == "system":
            for version in filter(None, (self.version, self.previous_version)):
                wire.system_target_path(self.model, version)  # ValueError: a 400 naming what is wrong
        return self


class CommandBody(_Body):
    reason: Reason | None = None
