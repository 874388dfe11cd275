"""The error root. Anything a user can cause raises a subclass with a one-line message."""


class WardSightError(Exception):
    """A problem the user can act on: bad input, bad config, missing model, unreachable server."""


class ConfigError(WardSightError):
    """A configuration file or environment override is malformed or names an unknown key."""


class FetchError(WardSightError):
    """A pinned artifact (model, demo footage) could not be obtained or failed verification."""
