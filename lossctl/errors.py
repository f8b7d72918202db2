"""Typed errors, each carrying the exit code documented in README.md.

0 success, 1 a quality gate failed, 2 usage error, 3 input data error; anything else is a bug.
"""
from __future__ import annotations


class LossctlError(Exception):
    """Base class: a message for the user (one line) and an exit code."""

    exit_code = 3

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(LossctlError):
    """Bad flag, unknown loss, unknown or out-of-range parameter (exit 2)."""

    exit_code = 2


class UnknownLossError(UsageError, KeyError):
    """A loss name or alias that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class InputError(LossctlError):
    """Unreadable file, missing column, invalid values (exit 3)."""

    exit_code = 3


class GateFailed(LossctlError):
    """A quality gate failed (exit 1)."""

    exit_code = 1


def shown(value, limit: int = 60) -> str:
    """``repr`` of a value from the user's data for a message, cut to ``limit`` characters (a 200 kB field
    must not become a 200 kB error line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'" + f" ({len(str(value))} characters)"


def where(file: str | None = None, column: str | None = None, row: int | None = None) -> str:
    """Format the 'file, column, row' prefix of an input error message."""
    parts = []
    if file:
        parts.append(str(file))
    if column:
        parts.append(f"column {column!r}")
    if row is not None:
        parts.append(f"row {row}")
    return ": ".join([", ".join(parts)]) if parts else ""
