"""The fleet's update endpoints as the OTA loop sees them: poll for an offer, report progress and outcomes."""

from __future__ import annotations

import logging
from typing import Protocol

from pydantic import ValidationError

from firmware.transport import FleetClient, NotAuthorizedError, UnreachableError
from wardsight import wire
from wardsight.errors import WardSightError

log = logging.getLogger("wardsight.device.ota")


class UpdateChannel(Protocol):
    def poll(self) -> wire.UpdateOffer | None: ...

    def report(self, report: wire.UpdateReport) -> bool:
        """True when the server has taken the report (or refused it for good), False to keep it for later."""
        ...


class ChannelError(WardSightError):
    """The server's answer to an update request was not usable."""


class FleetChannel:
    """The update endpoints of the fleet server, through the device's authenticated client."""

    def __init__(self, client: FleetClient) -> None:
        self.client = client

    def poll(self, *, system: bool = False) -> wire.UpdateOffer | None:
        """The device's offer (``system``: of either kind, as an agent that takes system updates asks)."""
        reply = self.client.request("GET", wire.UPDATE_PATH, query=wire.SYSTEM_POLL_QUERY if system else "")
        if reply.status == 204:
            return None
        if reply.status != 200:
            raise ChannelError(f"update poll answered HTTP {reply.status}: {reply.error}")
        try:
            return wire.UpdateOffer.model_validate(reply.body)
        except ValidationError as exc:
            raise ChannelError(f"the server's update offer is malformed: {exc.error_count()} errors") from None

    def report(self, report: wire.UpdateReport) -> bool:
        body = report.model_dump_json(exclude_none=True).encode()
        try:
            reply = self.client.request("POST", wire.UPDATE_PATH, body, "application/json")
        except (UnreachableError, NotAuthorizedError) as exc:
            log.info("update report kept for later: %s", exc)
            return False
        if 200 <= reply.status < 300:
            return True
        log.warning("the server refused the update report %s (HTTP %d): %s", report.state, reply.status, reply.error)
        return True  # a refusal would repeat: do not block the queue with it
