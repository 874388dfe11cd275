"""What a valid operator account and API token look like, and the refusal every account change raises."""

from __future__ import annotations

import re
from typing import cast

from fleet.auth.operator import ROLES, Role

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$"
MAX_TOKEN_LIFETIME = 366 * 24 * 3600


class OperatorError(Exception):
    """A refused change (unknown user, duplicate, weak password, last admin); ``str(exc)`` is for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def validate_username(username: str) -> None:
    if not isinstance(username, str) or not re.fullmatch(USERNAME_PATTERN, username):
        raise OperatorError(400, "username must be 1-64 lowercase letters, digits or . _ - (starting with one)")


def validate_role(role: str) -> Role:
    if role not in ROLES:
        raise OperatorError(400, f"role must be one of {', '.join(ROLES)}")
    return cast(Role, role)


def validate_token_name(name: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(LABEL_PATTERN, name):
        raise OperatorError(400, "token name must be 1-64 letters, digits, spaces or . _ : - (starting with one)")
