"""What a delivery carries (Standard Webhooks v1.0.0): its body, made once when queued, and the headers
signed for each attempt.

The body is ``{"type": "wardsight.<app>.<type>", "timestamp", "data"}``, ``data`` the event's fields or a
FHIR R4 ``Communication`` (:mod:`fleet.webhooks.fhir`). Every attempt sends exactly those bytes with the
same ``webhook-id``; only ``webhook-timestamp`` and the signatures are made per attempt (``v1a`` with the
server's Ed25519 key always, ``v1`` too when the endpoint has an HMAC secret).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fleet.webhooks import fhir
from wardsight import webhooks
from wardsight.wire import Event

Format = Literal["standard", "fhir"]
MAX_BODY_BYTES = 20_000  # Standard Webhooks: keep payloads small


def msg_id_for(event_id: str) -> str:
    """The Standard Webhooks ``webhook-id`` of an event's deliveries: the same for every attempt."""
    return "msg_" + event_id.replace("-", "")


def envelope(event: Event, fmt: Format, *, server_base: str | None = None) -> str:
    """The delivery body, serialized once: ``{"type": "wardsight.<app>.<type>", "timestamp", "data"}``."""
    if fmt == "fhir":
        data: dict[str, Any] = fhir.communication(event, server_base=server_base)
    else:
        data = event.model_dump(mode="json", exclude={"v"})
    body = {"type": f"wardsight.{event.app}.{event.type}", "timestamp": fhir.iso_time(event.time), "data": data}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def signed_headers(
    msg_id: str, body: bytes, now: float, *, hmac_secret: str | None, ed25519_key: str
) -> dict[str, str]:
    """One attempt's request headers: ``webhook-id``/``-timestamp``/``-signature`` and the content type.

    Raises:
        wardsight.webhooks.WebhookKeyError: a malformed key or secret.
    """
    headers = webhooks.sign(msg_id, int(now), body, hmac_secret=hmac_secret, ed25519_key=ed25519_key)
    headers["Content-Type"] = "application/json"
    return headers
