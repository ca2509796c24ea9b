"""One error hierarchy for meterbench.

Every error a user can cause (a bad file, a bad config value, an unreachable
device, an unusable output folder) is a :class:`MeterbenchError`; its message
is the one line the command line prints (file or field named, what was
expected). Anything else that escapes a command is a bug in meterbench: the
command line prints its traceback and exits with :data:`EXIT_INTERNAL_ERROR`.

This module imports nothing, so every package (``devices`` included) may use it.
"""

from __future__ import annotations

__all__ = [
    "EXIT_INTERNAL_ERROR",
    "EXIT_USER_ERROR",
    "ConfigError",
    "DeviceError",
    "DeviceTimeoutError",
    "MeterbenchError",
    "OutputError",
    "SessionError",
]

EXIT_USER_ERROR = 2
"""Exit status of a command refused for bad input or an unusable device/output."""
EXIT_INTERNAL_ERROR = 3
"""Exit status when meterbench itself failed (a bug): a traceback is printed."""


class MeterbenchError(Exception):
    """An error the user can fix; the message is one line naming the file/field and what was expected."""


class SessionError(MeterbenchError, ValueError):
    """A session folder cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str] | str, path: object | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.path = path
        super().__init__("\n".join(self.problems))


class ConfigError(MeterbenchError, ValueError):
    """A configuration file (BENCH.toml, a layout, a lab file) or option has a bad value."""


class OutputError(MeterbenchError, OSError):
    """An output folder or file cannot be used (exists, not writable, inside the session, ...)."""


class DeviceError(MeterbenchError, OSError):
    """A device could not be opened, read or commanded (the message says which and why)."""


class DeviceTimeoutError(DeviceError, TimeoutError):
    """A device did not answer or confirm within its timeout."""
