"""The package's exception types."""

from __future__ import annotations

__all__ = ["UsageError", "NotFittedError", "USER_ERRORS"]


class UsageError(ValueError):
    """A mistake in what was asked for: a bad value, an unknown name, a missing or malformed
    file. The command line reports it as ``error: ...`` with exit code 2, without a traceback."""


class NotFittedError(ValueError, AttributeError):
    """Raised when an unfitted predictor is asked to predict or save."""


# what a user's mistake raises: the command lines report it as "error: ..." with exit code 2
USER_ERRORS = (UsageError, ValueError, FileNotFoundError, FileExistsError, IsADirectoryError,
               NotADirectoryError, PermissionError, RuntimeError, ImportError)
