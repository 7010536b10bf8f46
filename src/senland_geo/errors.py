"""Errors a user can act on.

Every error the CLI shows as a one-line message (exit code 2) derives from
:class:`UserError`; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input or environment: the message names the value and the fix."""


class PluginNotFoundError(UserError, KeyError):
    """An unknown plugin name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadError(UserError, ImportError):
    """A plugin exists but failed to import or load."""
