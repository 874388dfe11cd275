"""Stream URLs without their credentials: what may be shown of a URL, and scrubbing it out of foreign text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|auth|sig|cred|session", re.IGNORECASE)
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """The URL with its user info and credential-like query values replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    netloc = ("***@" if "@" in parts.netloc else "") + (f"[{host}]" if ":" in host else host)
    if port is not None:
        netloc += f":{port}"
    query = "&".join(_redact_param(p) for p in parts.query.split("&")) if parts.query else ""
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _redact_param(param: str) -> str:
    key, sep, _ = param.partition("=")
    return f"{key}=***" if sep and SECRET_KEY.search(key) else param


def url_secrets(url: str | int) -> list[str]:
    """The password and credential-like query values of a URL (to scrub from foreign messages)."""
    if isinstance(url, int):
        return []
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
    except ValueError:
        return []
    for param in parts.query.split("&"):
        key, sep, value = param.partition("=")
        if sep and SECRET_KEY.search(key):
            found.append(value)
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def scrub(text: str, url: str | int, shown: str, secrets: Sequence[str]) -> str:
    """Remove the raw URL and its secrets from text we did not write ourselves (e.g. OpenCV's errors); the URL
    becomes ``shown`` (its redacted form)."""
    if isinstance(url, str):
        text = text.replace(url, shown)
    text = USERINFO.sub("***@", text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
