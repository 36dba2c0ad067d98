"""User-facing errors.

Every problem caused by the user's input (a missing file, a bad column, an invalid value) is
raised as :class:`MgoeError`. The CLI prints its message on one line and exits with status 2,
without a traceback; a library user catches it like any other exception.
"""

from __future__ import annotations


class MgoeError(Exception):
    """An error in the user's input or configuration; the message names the problem."""

    exit_code = 2


class IncompleteDirectoryError(MgoeError):
    """A directory was left half-written (by a killed run) or is not an mgoe directory."""
